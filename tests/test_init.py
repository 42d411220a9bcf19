"""Tests for the defocus package namespace: complete, and cheap to import."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import defocus

HEAVY = ("matplotlib", "scipy.optimize", "scipy.signal", "scipy.stats")


def _loaded_after(code: str) -> list[str]:
    """Which HEAVY modules a fresh interpreter holds after running ``code``."""
    env = dict(os.environ, PYTHONPATH=str(Path(defocus.__file__).parents[1]))
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_import_loads_no_heavy_module():
    assert _loaded_after("import defocus") == []


def test_cli_parser_builds_without_heavy_modules():
    assert _loaded_after("from defocus.cli import build_parser; build_parser()") == []


def test_namespace_is_complete():
    assert set(defocus.__all__) <= set(dir(defocus))
    for name in defocus.__all__:
        assert getattr(defocus, name) is not None
    assert defocus.focal_plane is importlib.import_module("defocus.focalplane").focal_plane
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = defocus.nope


def test_help_builds_no_sub_command():
    """``defocus --help`` lists every command without importing scipy or any command module."""
    code = (
        "import contextlib, io\nfrom defocus.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "import json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy' "
        "or m.startswith('defocus.cli.'))))"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(defocus.__file__).parents[1]))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


def test_partial_parser_matches_the_full_one():
    from defocus.cli import COMMANDS, build_parser

    full = build_parser()
    assert build_parser([]).format_help() == full.format_help()
    one = build_parser(["map"])
    argv = ["map", "a.tif", "-o", "out", "--psf", "disk"]
    assert vars(one.parse_args(argv)) == vars(full.parse_args(argv))
    assert set(COMMANDS) == set(full._subparsers._group_actions[0].choices)
