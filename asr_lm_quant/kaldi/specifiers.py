"""Kaldi rspecifiers and wspecifiers, and opening what they name.

Accepted read specifiers (``rspec``):

* ``ark:PATH``, ``ark,t:PATH``, ``ark,s,cs:PATH`` ... (options other than ``t``/``b`` are accepted and ignored);
  ``PATH`` may be gzip-compressed (detected from its first bytes).
* ``scp:PATH``: lines ``key rxfilename`` where ``rxfilename`` is ``file``, ``file:offset`` (byte offset of
  the object inside an archive) or a pipe.
* ``ark:gunzip -c lat.1.gz|`` (also ``gzip -cd``, ``zcat``, ``cat``) on one plain file is read without a
  shell; any other ``command|`` (``gunzip -c dir/lat.*.gz|`` included) runs through ``bash -c`` as Kaldi's
  popen would. ``-`` is standard input.
* A bare path (``exp/dec/lat.1.gz``, ``lat.ark``) means ``ark:PATH``.

Write specifiers (``wspec``): ``ark:PATH`` (binary), ``ark,t:PATH`` (text), gzip when ``PATH`` ends in ``.gz``;
``ark:|gzip -c > PATH`` (written natively), other ``ark:| command`` pipes through ``bash -c``; ``ark,scp:A,S``
also writes an scp index ``S`` with ``key A:offset`` lines; ``-`` is standard output. Files are written to a
temporary name and renamed when the writer closes without error.
"""

from __future__ import annotations

import gzip
import io
import re
import shlex
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from asr_lm_quant.errors import InputError

_DECOMPRESS = {("gunzip", "-c"), ("gzip", "-cd"), ("gzip", "-dc"), ("gzip", "-d", "-c"), ("zcat",),
               ("gunzip", "-c", "-f"), ("cat",)}


@dataclass
class RSpec:
    kind: str  # "ark" or "scp"
    target: str  # path, "-" or "command|"
    options: frozenset


@dataclass
class WSpec:
    target: str  # path, "-" or "|command"
    binary: bool
    scp: str | None = None
    options: frozenset = frozenset()


def parse_rspecifier(spec: str) -> RSpec:
    spec = str(spec)
    m = re.match(r"^(ark|scp)((?:,[a-z]+)*):(.*)$", spec, re.S)
    if not m:
        if spec.startswith(("ark,", "scp,")) or re.match(r"^[a-z]+(,[a-z]+)*:", spec) and not Path(spec).exists():
            raise InputError(spec, "not a valid rspecifier (expected ark:..., ark,t:... or scp:...)")
        return RSpec("ark", spec, frozenset())
    opts = frozenset(o for o in m.group(2).split(",") if o)
    target = m.group(3).strip()
    if not target:
        raise InputError(spec, "rspecifier names no file")
    return RSpec(m.group(1), target, opts)


def parse_wspecifier(spec: str) -> WSpec:
    spec = str(spec)
    m = re.match(r"^(ark|scp|ark,scp|scp,ark)((?:,[a-z]+)*):(.*)$", spec, re.S)
    if not m:
        if re.match(r"^[a-z]+(,[a-z]+)*:", spec):
            raise InputError(spec, "not a valid wspecifier (expected ark:..., ark,t:... or ark,scp:A,S)")
        return WSpec(spec, binary=True)
    head = m.group(1).split(",") + [o for o in m.group(2).split(",") if o]
    opts = frozenset(head)
    target = m.group(3).strip()
    binary = "t" not in opts
    if "scp" in opts:
        if "ark" not in opts:
            raise InputError(spec, "writing scp: alone is not supported (use ark,scp:ARCHIVE,SCP)")
        if "," not in target:
            raise InputError(spec, "ark,scp: needs two files, ARCHIVE,SCP")
        ark, scp = target.split(",", 1)
        return WSpec(ark, binary, scp, opts)
    if not target:
        raise InputError(spec, "wspecifier names no file")
    return WSpec(target, binary, None, opts)


def gzip_target(cmd: str) -> str | None:
    """``gzip -c > PATH`` (and ``gzip > PATH``) -> PATH; None for other commands."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if len(words) >= 3 and words[0] == "gzip" and words[-2] == ">" and all(
            w in ("-c", "-1", "-6", "-9", "--fast", "--best") for w in words[1:-2]):
        return words[-1]
    if len(words) >= 2 and words[0] == "gzip" and words[-1].startswith(">") and len(words[-1]) > 1:
        return words[-1][1:]
    return None


def output_files(wspec: str) -> list[str]:
    """The files a wspecifier will create (archive and scp index), for checking them before the work; a pipe
    to another command or standard output names none."""
    spec = parse_wspecifier(wspec)
    target = spec.target
    if target.startswith("|"):
        target = gzip_target(target[1:].strip())
    files = [] if target in (None, "-") else [target]
    return files + ([spec.scp] if spec.scp else [])


def _native_decompress(cmd: str) -> str | None:
    """The file of ``gunzip -c FILE``-like commands we can run ourselves, else None.

    Anything the shell would expand or interpret (``lat.*.gz``, ``$dir``, ``~``, redirections, several
    commands) goes to the shell instead, as Kaldi's popen would send it."""
    if re.search(r"[*?\[\]{}$`~;&<>()\\!]", cmd):
        return None
    try:
        words = shlex.split(cmd)
    except ValueError:
        return None
    if len(words) >= 2 and tuple(words[:-1]) in _DECOMPRESS:
        return words[-1]
    return None


class _ProcStream(io.RawIOBase):
    """stdout of a child process; closing waits for it and reports a failure."""

    def __init__(self, cmd: str):
        self.cmd = cmd
        self.proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE)

    def readable(self):
        return True

    def readinto(self, b):
        return self.proc.stdout.readinto(b)

    def close(self):
        if not self.closed:
            self.proc.stdout.close()
            rc = self.proc.wait()
            super().close()
            if rc not in (0, -13):  # -13: we stopped reading early (SIGPIPE)
                raise InputError(self.cmd, f"command exited with status {rc}")


def open_input(target: str, *, offset: int = 0):
    """A binary stream over ``target`` (path, ``-`` or ``cmd|``), transparently gunzipped."""
    if target == "-":
        raw = sys.stdin.buffer
        return _maybe_gunzip(io.BufferedReader(raw) if not hasattr(raw, "peek") else raw, target)
    if target.endswith("|"):
        cmd = target[:-1].strip()
        path = _native_decompress(cmd)
        if path is None:
            return io.BufferedReader(_ProcStream(cmd), 1 << 16)
        target = path
    p = Path(target)
    if not p.exists():
        raise InputError(p, "file does not exist")
    if p.is_dir():
        raise InputError(p, "is a directory, not an archive")
    f = open(p, "rb")
    stream = _maybe_gunzip(f, target)
    if offset:
        if stream is f:
            f.seek(offset)
        else:
            _skip(stream, offset, target)
    return stream


def _skip(stream, n, target):
    while n:
        got = stream.read(min(n, 1 << 20))
        if not got:
            raise InputError(target, f"offset {n} is past the end of the data")
        n -= len(got)


def _maybe_gunzip(f, name):
    head = f.peek(2)[:2] if hasattr(f, "peek") else b""
    if head == b"\x1f\x8b":
        return _GzipErrors(gzip.GzipFile(fileobj=f, mode="rb"), name)
    return f


class _GzipErrors(io.RawIOBase):
    """A gzip reader whose corrupt-data errors become InputError naming the file and the offset (in the
    decompressed data) where the damage starts: the good data before it is delivered first."""

    CHUNK = 1 << 16

    def __init__(self, gz, name):
        self.gz, self.name, self.done, self._pending = gz, name, 0, None

    def readable(self):
        return True

    def readinto(self, b):
        if self._pending is not None:
            raise self._pending
        view, n = memoryview(b).cast("B"), 0
        while n < len(view):
            try:
                k = self.gz.readinto(view[n:n + self.CHUNK])
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # zlib.error: corrupt deflate data
                self._pending = InputError(self.name, f"bad gzip data ({e})", offset=self.done + n)
                if n == 0:
                    raise self._pending from None
                break
            if not k:
                break
            n += k
        self.done += n
        return n

    def read(self, n=-1):
        if n is None or n < 0:
            chunks = []
            while True:
                got = self.read(1 << 20)
                if not got:
                    return b"".join(chunks)
                chunks.append(got)
        buf = bytearray(n)
        k = self.readinto(buf)
        return bytes(buf[:k])

    def close(self):
        if not self.closed:
            self.gz.close()
            if self.gz.fileobj is not None:
                self.gz.fileobj.close()
            super().close()


def iter_scp(path: str):
    """(key, rxfilename, offset) for each line of an scp file."""
    with open_input(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise InputError(path, f"expected 'key rxfilename', got {line!r}", line=n)
            key, rx = parts
            offset = 0
            m = re.match(r"^(.*):(\d+)$", rx)
            if m and not rx.endswith("|"):
                rx, offset = m.group(1), int(m.group(2))
            yield key, rx, offset, n
