"""``python -m defocus``: the same entry point as the ``defocus`` command."""

import sys

from .cli import main

sys.exit(main())
