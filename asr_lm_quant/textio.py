"""Reading text input, the one way the package does it: lines, and the words on a line.

``read_lines(source)`` reads a file (plain, or ``.gz``/``.xz``/``.bz2`` by its suffix), ``-`` (standard
input) or ``command |`` (the command's output, as Kaldi's rxfilenames); a line that is not UTF-8, a broken
compressed stream or a failing command is an InputError naming the source and the line.

``split_fields(line)`` is Kaldi's tokenisation: fields are separated by ASCII whitespace only, as Perl's
``split(" ")``, awk and Kaldi's C++ readers see them. ``str.split()`` also splits on Unicode spaces (a
no-break space, U+00A0, say), which would make one word of a words.txt two words of the training text.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import re
import stat
import subprocess
import sys
import zlib
from pathlib import Path

from asr_lm_quant.errors import InputError

_ASCII_SPACE = re.compile(r"[ \t\n\r\f\v]+")


def split_fields(line: str) -> list[str]:
    """The whitespace-separated fields of ``line``; only ASCII whitespace separates (a no-break space
    inside a word does not)."""
    return [f for f in _ASCII_SPACE.split(line) if f]


_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}


def open_binary(path):
    """Open the file ``path`` for reading bytes, decompressing ``.gz``/``.xz``/``.bz2`` by its suffix."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a file")
    return _OPENERS.get(path.suffix, open)(path, "rb")


def _command(source) -> str | None:
    """The command of a ``command |`` source, else None."""
    s = str(source).rstrip()
    return s[:-1].strip() if isinstance(source, str) and s.endswith("|") else None


@contextlib.contextmanager
def _open_source(source):
    cmd = _command(source)
    if str(source) == "-":
        yield sys.stdin.buffer
    elif cmd is not None:
        proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE)
        try:
            yield proc.stdout
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if rc:
            raise InputError(source, f"the command exited with status {rc}")
    else:
        with open_binary(source) as f:
            yield f


def read_lines(source, *, encoding: str = "utf-8"):
    """Yield ``(line_number, line)`` for each line of ``source`` (a file, ``-`` or ``command |``) without its
    line break (``\\n``; a ``\\r`` before it stays, and splits as whitespace).

    Undecodable bytes and broken compressed streams raise InputError naming the line and byte offset.
    """
    offset = 0
    n = 0
    with _open_source(source) as f:
        while True:
            try:
                raw = f.readline()
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
                raise InputError(source, f"cannot decompress ({e})", line=n + 1) from None
            if not raw:
                return
            n += 1
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise InputError(source, f"not valid {encoding.upper()} ({e.reason})", line=n,
                                 offset=offset + e.start) from None
            offset += len(raw)
            yield n, line[:-1] if line.endswith("\n") else line


def check_exists(*paths):
    """Fail early, before any output is written, if an input is missing."""
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InputError(p, "file does not exist")


def check_readable_once(path, what: str | None = "file") -> None:
    """An input read once may be a regular file, ``-`` (standard input), a FIFO or a process substitution
    (``<(head -3 sents.txt)``, ``/dev/fd/63``): Kaldi users pipe everything. Missing or a directory is an
    error naming it."""
    if str(path) == "-":
        return
    p = Path(path)
    missing = f"{what} does not exist" if what else "does not exist"
    what = what or "file"
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise InputError(p, missing) from None
    except OSError as e:
        raise InputError(p, f"cannot read {what} ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise InputError(p, f"is a directory, not a {what}")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)):
        raise InputError(p, f"is not a readable {what}")
