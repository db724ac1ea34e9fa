"""The n-best formats: one module of this package per format, found by scanning the package.

A format module defines ``FORMAT = Format(...)``: its name (``--nbest-format``), a help line, how to recognise
it and ``read(path, references) -> iterator of [NbestHyp, ...]`` (one list per utterance, best rank first,
``acoustic_cost`` from :func:`~asr_lm_quant.nbest.common.cost_from_log_prob`), putting into ``references``
(``{utt: words}``) the references the format carries. Dropping a module in this package is all it takes:
detection, ``--nbest-format``'s choices and help read :func:`all_formats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from asr_lm_quant.registry import scan


@dataclass(frozen=True)
class Format:
    name: str
    help: str
    read: Callable                  # read(path, references: dict) -> iterator of per-utterance lists
    # Recognising a file: a name ending in one of ``suffixes`` is this format, unread; otherwise the first item
    # of the JSON list or JSON lines file decides, ``detect(item, is_line) -> bool`` (is_line: JSON lines).
    # A directory format (``directory``: what the directory is, for messages) has ``detect(path) -> bool``.
    detect: Callable | None = None
    suffixes: tuple = ()
    directory: str | None = None
    references: bool = False        # its files can carry the references (read puts them into references)
    score_kind: Callable | None = None  # score_kind(path) -> "per-token" or "total": what its scores are,
    #                                     where the file says (else the scores are totals, or unknown)


_found: dict[str, Format] | None = None


def all_formats() -> dict[str, Format]:
    """name -> Format of every module of this package, by name."""
    global _found
    if _found is None:
        found = scan(__name__, __path__, "FORMAT", Format, reserved=("auto",))
        _found = dict(sorted(found.items()))
    return _found


def forget() -> None:
    """Scan the package again on the next call (after a module was added to it)."""
    global _found
    _found = None


def format_help() -> str:
    """``--nbest-format``'s help: every format with its help line."""
    return ("format of the n-best input: auto (detected; an error when unclear), "
            + ", ".join(f"{n} ({f.help})" for n, f in all_formats().items()))
