"""Reading corpus files: plain, gzip, xz or bzip2, line by line, with errors that name file and line."""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
from pathlib import Path

from asr_lm_quant.errors import InputError

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def split_fields(line: str) -> list[str]:
    """Whitespace-separated fields as Perl's ``split(" ")`` and awk see them: only ASCII whitespace
    separates (a no-break space inside a word does not)."""
    return [f for f in _ASCII_SPACE.split(line) if f]


_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def open_binary(path):
    """Open ``path`` for reading bytes, decompressing ``.gz``/``.xz``/``.bz2`` by its suffix."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    return _OPENERS.get(path.suffix, open)(path, "rb")


def read_lines(path, *, encoding: str = "utf-8"):
    """Yield ``(line_number, line)`` for each line of ``path`` without its line break.

    Undecodable bytes and broken compressed streams raise InputError naming the line and byte offset.
    """
    offset = 0
    n = 0
    with open_binary(path) as f:
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError, lzma.LZMAError) as e:
                raise InputError(path, f"cannot decompress ({e})", line=n + 1) from None
            if not raw:
                return
            n += 1
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise InputError(path, f"not valid {encoding.upper()} ({e.reason})", line=n,
                                 offset=offset + e.start) from None
            offset += len(raw)
            yield n, line.rstrip("\n")


def check_exists(*paths):
    """Fail early, before any output is written, if an input is missing."""
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(p, "file does not exist")
