"""Lattice archives: stream (key, lattice) pairs out of Kaldi tables and write them back.

``read_lattices(rspec)`` is a generator: it holds one lattice at a time, so a decode dir of any size needs
no more memory than its largest lattice. Each entry is ``key`` + one space + the lattice in binary (starts
with the OpenFst magic byte 0xD6) or text form (starts with whitespace, ends with a blank line); the two
may be mixed in one archive, as in Kaldi. Corrupt input raises :class:`InputError` naming the file, the key
and the byte offset (in the decompressed stream for gzip files).

``LatticeWriter(wspec)`` writes Kaldi-compatible archives, binary or text (see ``specifiers``).
"""

from __future__ import annotations

import gzip
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from asr_lm_quant.atomic import atomic_path
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import lattice_to_compact
from asr_lm_quant.kaldi.fst_binary import check_lattice, read_fst_binary, write_fst_binary
from asr_lm_quant.kaldi.fst_text import TextLatticeError, parse_fst_text, write_fst_text
from asr_lm_quant.kaldi.lattice import Lattice, compact_to_lattice
from asr_lm_quant.kaldi.specifiers import gzip_target, iter_scp, open_input, parse_rspecifier, parse_wspecifier
from asr_lm_quant.kaldi.stream import WHITESPACE, ByteReader

log = logging.getLogger(__name__)
MAGIC_FIRST = 0xD6
MAX_KEY = 4096


def _convert(lat: Lattice, kind: str | None) -> Lattice:
    if kind is None:
        return lat
    if kind == "compact":
        return lattice_to_compact(lat)
    if kind == "lattice":
        return compact_to_lattice(lat)
    raise ValueError(f"kind must be None, 'compact' or 'lattice', not {kind!r}")


def read_object(r: ByteReader, *, path, key, lenient_key_line: bool = True) -> Lattice:
    """Parse one lattice right after ``key`` and its separating space."""
    at = r.offset
    c = r.peek()
    if c == -1:
        raise InputError(path, "truncated archive: end of data after the key", key=key, offset=at)
    if c == MAGIC_FIRST:
        return read_fst_binary(r, path=path, key=key)
    rest = r.read_line(limit=1 << 16)
    if rest is None:
        rest = b""
    if rest.strip(WHITESPACE):
        # Kaldi puts nothing after the key; some tools write a label there. Accept printable text.
        try:
            text = rest.decode("utf-8")
            if not text.replace("\t", " ").strip().isprintable():
                raise ValueError
        except (UnicodeDecodeError, ValueError):
            raise InputError(path, "does not look like a lattice: no OpenFst magic number and not text",
                             key=key, offset=at) from None
        log.debug("%s: ignoring %r after key %r", path, text, key)
    lines, offsets = [], []
    while True:
        line_at = r.offset
        try:
            raw = r.read_line()
        except ValueError as e:
            raise InputError(path, f"bad text lattice: {e}", key=key, offset=line_at) from None
        if raw is None:
            break
        try:
            fields = raw.decode("ascii").split()
        except UnicodeDecodeError:
            raise InputError(path, "bad text lattice: non-ASCII bytes in a lattice line", key=key,
                             offset=line_at) from None
        if not fields:
            break
        lines.append(fields)
        offsets.append(line_at)
    try:
        lat = parse_fst_text(lines)
    except TextLatticeError as e:
        off = offsets[e.line_index] if offsets else at
        raise InputError(path, f"bad text lattice: {e}", key=key, offset=off) from None

    def error(msg, _at):
        return InputError(path, msg, key=key, offset=at)
    check_lattice(lat, error, at)
    return lat


def read_archive_stream(stream, *, path, kind=None):
    """(key, lattice) for each entry of an archive stream."""
    r = ByteReader(stream)
    while True:
        r.skip_whitespace()
        if r.at_eof():
            return
        at = r.offset
        tok = r.read_token(limit=MAX_KEY)
        if tok is None or not tok:
            raise InputError(path, "bad archive: expected a key", offset=at)
        try:
            key = tok.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(path, f"bad archive: key is not UTF-8 ({tok[:40]!r})", offset=at) from None
        if not key.isprintable():
            raise InputError(path, f"bad archive: key {key[:40]!r} has control characters", offset=at)
        c = r.peek()
        if c == -1:
            raise InputError(path, "truncated archive: end of data after the key", key=key, offset=r.offset)
        if c in (0x20, 0x09):  # one space or tab after the key; a newline is left for the text reader (Kaldi)
            r.pos += 1
        lat = read_object(r, path=path, key=key)
        yield key, _convert(lat, kind)


def read_lattices(rspec, *, kind: str | None = None):
    """Stream ``(key, Lattice)`` from an rspecifier, a bare archive path or a pipe.

    ``kind``: ``None`` keeps each lattice as stored; ``"compact"`` or ``"lattice"`` converts (as Kaldi's
    CompactLattice/Lattice readers do).
    """
    spec = parse_rspecifier(rspec)
    if spec.kind == "scp":
        for key, rx, offset, n in iter_scp(spec.target):
            with open_input(rx, offset=offset) as f:
                r = ByteReader(f)
                lat = read_object(r, path=rx, key=key)  # an offset points just past "key "
            yield key, _convert(lat, kind)
        return
    stream = open_input(spec.target)
    try:
        yield from read_archive_stream(stream, path=spec.target, kind=kind)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_lattice_dict(rspec, *, kind=None) -> dict:
    """All lattices of a table, by key (small tables only: this holds them all)."""
    return dict(read_lattices(rspec, kind=kind))


def decode_dir_jobs(decode_dir) -> list[Path]:
    """``lat.1.gz .. lat.N.gz`` of a decode dir, ``N`` from its ``num_jobs`` file."""
    d = Path(decode_dir)
    nj_file = d / "num_jobs"
    if not nj_file.exists():
        raise InputError(nj_file, "decode dir has no num_jobs file")
    text = nj_file.read_text().strip()
    if not text.isdigit() or int(text) < 1:
        raise InputError(nj_file, f"num_jobs must be a positive integer, got {text!r}", line=1)
    paths = [d / f"lat.{j}.gz" for j in range(1, int(text) + 1)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InputError(d, f"missing lattice file(s): {', '.join(missing[:3])}")
    return paths


def read_decode_dir(decode_dir, *, kind=None):
    """Stream ``(key, lattice)`` through all ``lat.JOB.gz`` of a decode dir, job by job."""
    for p in decode_dir_jobs(decode_dir):
        yield from read_lattices(f"ark:{p}", kind=kind)


class LatticeWriter:
    """Write lattices to a wspecifier; use as a context manager (output appears only on success).

    >>> with LatticeWriter("ark:| gzip -c > out/lat.1.gz") as w:
    ...     w.write("utt1", lat)
    """

    def __init__(self, wspec, *, kind: str | None = None, overwrite: bool = True):
        self.spec = parse_wspecifier(wspec)
        self.kind = kind
        self.binary = self.spec.binary
        self._ctx = []
        self._proc = None
        self._scp = None
        self.offset = 0
        target = self.spec.target
        gz = False
        if target.startswith("|"):
            cmd = target[1:].strip()
            path = gzip_target(cmd)
            if path is None:
                self._proc = subprocess.Popen(["bash", "-c", cmd], stdin=subprocess.PIPE)
                self._f = self._proc.stdin
                return
            target, gz = path, True
        if target == "-":
            self._f = sys.stdout.buffer
            return
        gz = gz or target.endswith(".gz")
        ctx = atomic_path(target, overwrite=overwrite)
        tmp = ctx.__enter__()
        self._ctx.append(ctx)
        raw = open(tmp, "wb")
        self._raw = raw
        self._f = gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) if gz else raw
        if self.spec.scp:
            if gz:
                raise InputError(self.spec.scp, "an scp index into a gzip archive cannot be read back")
            sctx = atomic_path(self.spec.scp, overwrite=overwrite)
            self._scp_tmp = sctx.__enter__()
            self._ctx.append(sctx)
            self._scp = open(self._scp_tmp, "w", encoding="utf-8")
        self._f = io.BufferedWriter(self._f, 1 << 20) if gz else self._f

    def write(self, key: str, lat: Lattice) -> None:
        if not key or any(ch.isspace() for ch in key):
            raise ValueError(f"bad key {key!r}: keys are non-empty and have no whitespace")
        lat = _convert(lat, self.kind)
        _check_float32(key, lat, self.spec.target)
        head = (key + " ").encode("utf-8")
        body = write_fst_binary(lat) if self.binary else write_fst_text(lat).encode("ascii")
        self._f.write(head)
        self._f.write(body)
        if self._scp:
            self._scp.write(f"{key} {self.spec.target}:{self.offset + len(head)}\n")
        self.offset += len(head) + len(body)

    def close(self, ok: bool = True) -> None:
        err = None
        try:
            if self._f is not sys.stdout.buffer:
                self._f.close()
            else:
                self._f.flush()
            if self._proc is not None:
                rc = self._proc.wait()
                if rc != 0 and ok:
                    err = InputError(self.spec.target, f"command exited with status {rc}")
            if hasattr(self, "_raw"):
                self._raw.close()
            if self._scp:
                self._scp.close()
        finally:
            for ctx in reversed(self._ctx):
                if ok and err is None:
                    ctx.__exit__(None, None, None)
                else:
                    ctx.__exit__(RuntimeError, RuntimeError("write failed"), None)
            self._ctx = []
        if err:
            raise err

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close(ok=et is None)
        return False


_F32_MAX = float(np.finfo(np.float32).max)


def _check_float32(key, lat: Lattice, target) -> None:
    """Refuse to write a lattice our reader (and Kaldi's) would reject: what :func:`check_lattice` refuses
    on reading, and finite costs beyond float32 (Kaldi's storage type), which would become infinite."""
    def error(msg, _at):
        return InputError(target, f"cannot write this lattice: {msg}", key=key)
    check_lattice(lat, error, None)
    c = np.abs(np.concatenate((lat.graph, lat.acoustic, lat.final_graph, lat.final_acoustic)))
    if np.any((c > _F32_MAX) & (c != np.inf)):
        raise error("a cost is beyond the float32 range Kaldi stores", None)


def write_lattices(wspec, items, *, kind=None, overwrite=True) -> int:
    """Write ``(key, lattice)`` pairs; returns how many were written."""
    n = 0
    with LatticeWriter(wspec, kind=kind, overwrite=overwrite) as w:
        for key, lat in items:
            w.write(key, lat)
            n += 1
    return n

