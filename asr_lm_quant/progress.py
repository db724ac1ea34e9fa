"""Progress bars, decided in one place: shown when stderr is a terminal, never with ``--quiet``.

Library code asks for a bar through :func:`bar` (tqdm's arguments); ``enabled=False`` is the caller's own off
switch (another rank, an API call that asked for none). The command line runs each command inside
:func:`session`.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    # disable=None: tqdm itself turns the bar off when its stream (stderr) is not a terminal.
    return tqdm(iterable, disable=True if (_quiet or not enabled) else None, **kwargs)


@contextmanager
def session(quiet: bool):
    """One command's setting. The bars of libraries we call (tqdm with its default, always on) follow it too,
    through tqdm's ``TQDM_DISABLE`` default, so that a log file gets no bar from them either."""
    old_quiet, old_env = _quiet, os.environ.get("TQDM_DISABLE")
    set_quiet(quiet)
    if quiet or not sys.stderr.isatty():
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        set_quiet(old_quiet)
        if old_env is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = old_env
