"""Old keyword names that still work, with a warning, after a rename.

A renamed keyword keeps its old name for a deprecation period: calls that use it get a
``FutureWarning`` (shown to users by default, unlike ``DeprecationWarning``) and run as if the
new name had been given.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["renamed_keywords"]

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**old_to_new: str) -> Callable[[F], F]:
    """Accept each ``old=`` keyword as ``new=``, with a ``FutureWarning``.

    Examples
    --------
    >>> import warnings
    >>> @renamed_keywords(noise="noise_sigma")
    ... def f(*, noise_sigma=None):
    ...     return noise_sigma
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     f(noise=2.0), seen[0].category.__name__
    (2.0, 'FutureWarning')
    """

    def wrap(func: F) -> F:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{func.__name__}() got {old}= and {new}=; {old} is {new} now")
                warnings.warn(
                    f"{func.__name__}(): {old}= is deprecated; use {new}=",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return cast(F, call)

    return wrap
