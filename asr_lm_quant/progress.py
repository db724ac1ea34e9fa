"""Progress bars, decided in one place: shown when stderr is a terminal, never with ``--quiet``.

Library code asks for a bar through :func:`bar` (tqdm's arguments); ``enabled=False`` is the caller's own off
switch (another rank, an API call that asked for none). The command line calls :func:`set_quiet` once.
"""

from __future__ import annotations

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    # disable=None: tqdm itself turns the bar off when its stream (stderr) is not a terminal.
    return tqdm(iterable, disable=True if (_quiet or not enabled) else None, **kwargs)
