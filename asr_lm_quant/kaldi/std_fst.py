"""Reading OpenFst binaries over the tropical semiring (``standard`` arcs): Kaldi's ``G.fst``.

Two layouts, little-endian, after the header that lattices share (see :mod:`asr_lm_quant.kaldi.fst_binary`:
magic, fst type, arc type, version, flags, properties uint64, start int64, states int64, arcs int64):

* ``vector`` (what ``arpa2fst`` and ``fstcompile`` write): per state the final weight float32 (+inf: not
  final), the arc count int64, then per arc ilabel int32, olabel int32, weight float32, nextstate int32.
* ``const`` (``fstconvert --fst_type=const``): all states, 20 bytes each (final weight float32, first arc
  uint32, arc count uint32, input-epsilon count uint32, output-epsilon count uint32), then all arcs as above.
  Aligned (``--fst_align``: version 1, header flag 4), the states and the arcs each start at a multiple of
  16 bytes.

Symbol tables stored in the file (header flags 1 and 2) are skipped: Kaldi keeps them in ``words.txt``.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.fst_binary import MAGIC

SYMBOL_TABLE_MAGIC = 2125658996
FLAG_ISYMBOLS, FLAG_OSYMBOLS, FLAG_ALIGNED = 1, 2, 4
ALIGN = 16
STD_ARC = np.dtype([("il", "<i4"), ("ol", "<i4"), ("w", "<f4"), ("next", "<i4")])
CONST_STATE = np.dtype([("final", "<f4"), ("pos", "<u4"), ("narcs", "<u4"), ("nieps", "<u4"), ("noeps", "<u4")])


@dataclass
class StdFst:
    """A tropical-weight FST as arrays: the arcs of state ``s`` are ``arc_offsets[s]:arc_offsets[s+1]``."""
    start: int
    final: np.ndarray  # float32 per state, +inf where not final
    arc_offsets: np.ndarray  # int64, num_states + 1
    ilabel: np.ndarray
    olabel: np.ndarray
    weight: np.ndarray
    nextstate: np.ndarray
    fst_type: str

    @property
    def num_states(self) -> int:
        return len(self.final)

    @property
    def num_arcs(self) -> int:
        return len(self.ilabel)


class _Reader:
    def __init__(self, data: bytes, path):
        self.data, self.path, self.pos = data, path, 0

    def error(self, msg, offset=None):
        return InputError(self.path, msg, offset=self.pos if offset is None else offset)

    def take(self, fmt: str, what: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise self.error(f"truncated FST: end of file while reading {what}")
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v if len(v) > 1 else v[0]

    def string(self, what: str, limit: int = 256) -> str:
        at = self.pos
        n = self.take("<i", what)
        if n < 0 or n > limit:
            raise self.error(f"bad {what} length {n}", at)
        if self.pos + n > len(self.data):
            raise self.error(f"truncated FST: end of file while reading {what}")
        s = self.data[self.pos:self.pos + n]
        self.pos += n
        return s.decode("utf-8", "replace")

    def array(self, dtype: np.dtype, count: int, what: str) -> np.ndarray:
        size = dtype.itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise self.error(f"truncated FST: end of file in {what} ({count} expected)")
        a = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += size
        return a

    def align(self) -> None:
        self.pos += -self.pos % ALIGN

    def skip_symbol_table(self, what: str) -> None:
        at = self.pos
        if self.take("<i", f"{what} magic number") != SYMBOL_TABLE_MAGIC:
            raise self.error(f"bad {what} in the FST (wrong magic number)", at)
        self.string(f"{what} name", limit=1 << 20)
        self.take("<q", f"{what} next key")
        n = self.take("<q", f"{what} size")
        if n < 0:
            raise self.error(f"bad {what} size {n}", at)
        for _ in range(n):
            self.string(f"{what} entry", limit=1 << 20)
            self.take("<q", f"{what} key")


def read_std_fst(path) -> StdFst:
    """Read a ``vector`` or ``const`` FST with ``standard`` (tropical float) arcs, plain or gzipped."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read ({e})") from None
    r = _Reader(data, path)
    if r.take("<i", "magic number") != MAGIC:
        raise r.error("not an OpenFst binary (bad magic number)", 0)
    fst_type = r.string("fst type")
    arc_at = r.pos
    arc_type = r.string("arc type")
    if arc_type != "standard":
        raise r.error(f"arc type {arc_type!r}: an n-gram LM FST has 'standard' (tropical) arcs", arc_at)
    hdr_at = r.pos
    version, flags, _props, start, nstates, narcs = r.take("<iiQqqq", "header")
    if fst_type not in ("vector", "const"):
        raise r.error(f"unsupported fst type {fst_type!r} (expected 'vector' or 'const')", 4)
    if not 0 <= nstates < 1 << 40 or not -1 <= start < max(nstates, 1):
        raise r.error(f"bad header: {nstates} states, start state {start}", hdr_at)
    if flags & FLAG_ISYMBOLS:
        r.skip_symbol_table("input symbol table")
    if flags & FLAG_OSYMBOLS:
        r.skip_symbol_table("output symbol table")
    if fst_type == "const":
        final, offsets, arcs = _const_body(r, version, flags, nstates, narcs, hdr_at)
    else:
        if version not in (1, 2):
            raise r.error(f"unsupported vector fst version {version}", hdr_at)
        final, offsets, arcs = _vector_body(r, nstates)
    bad = np.flatnonzero((arcs["next"] < 0) | (arcs["next"] >= nstates))
    if len(bad):
        s = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise InputError(path, f"arc of state {s} goes to state {int(arcs['next'][bad[0]])}, out of range "
                               f"(the FST has {nstates} states)")
    if np.isnan(arcs["w"]).any() or np.isnan(final).any():
        raise InputError(path, "NaN weight in the FST")
    return StdFst(int(start), final, offsets, arcs["il"].copy(), arcs["ol"].copy(), arcs["w"].copy(),
                  arcs["next"].copy(), fst_type)


def _const_body(r: _Reader, version: int, flags: int, nstates: int, narcs: int, hdr_at: int):
    """A const FST's states and arcs: ``(final weights, arc offsets per state, arcs)``."""
    if version not in (1, 2) or not 0 <= narcs < 1 << 40:
        raise r.error(f"unsupported const fst (version {version}, {narcs} arcs)", hdr_at)
    aligned = version == 1 or flags & FLAG_ALIGNED  # OpenFst writes aligned const FSTs as version 1
    if aligned:
        r.align()
    states = r.array(CONST_STATE, nstates, "the states")
    if aligned:
        r.align()
    arcs = r.array(STD_ARC, narcs, "the arcs")
    offsets = np.zeros(nstates + 1, np.int64)
    offsets[1:] = np.cumsum(states["narcs"], dtype=np.int64)
    if offsets[-1] != narcs or np.any(states["pos"].astype(np.int64) != offsets[:-1]):
        raise r.error("const fst: state arc ranges do not tile the arc array", hdr_at)
    final = states["final"].copy()
    return final, offsets, arcs


def _vector_body(r: _Reader, nstates: int):
    """A vector FST's states and arcs: ``(final weights, arc offsets per state, arcs)``."""
    # Only the walk from state to state is sequential (each arc count says where the next state starts);
    # the finals and arcs are then gathered at once. Every field is a 4-byte word at the same offset
    # modulo 4 as the first state, so the gather runs on one int32 view of the file.
    heads, counts = [], []
    unpack_count = struct.Struct("<q").unpack_from
    data, pos, end = r.data, r.pos, len(r.data)
    for s in range(nstates):
        if pos + 12 > end:
            r.pos = pos
            raise r.error(f"truncated FST: end of file at state {s} of {nstates}")
        (n,) = unpack_count(data, pos + 4)
        if n < 0 or pos + 12 + 16 * n > end:
            r.pos = pos + 4
            raise r.error(f"truncated FST: end of file in the arcs of state {s} ({n} arcs)"
                          if n >= 0 else f"bad arc count {n} for state {s}")
        heads.append(pos)
        counts.append(n)
        pos += 12 + 16 * n
    base = r.pos % 4
    r.pos = pos
    words = np.frombuffer(data, "<i4", (len(data) - base) // 4, base)
    head_words = (np.asarray(heads, np.int64) - base) // 4
    final = words[head_words].view("<f4").copy()
    counts = np.asarray(counts, np.int64)
    offsets = np.zeros(nstates + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    first_arc = np.repeat(head_words + 3 - 4 * offsets[:-1], counts) + 4 * np.arange(offsets[-1])
    arcs = np.empty(offsets[-1], STD_ARC)
    for j, field in enumerate(("il", "ol", "w", "next")):
        arcs[field] = words[first_arc + j].view(STD_ARC[field])
    return final, offsets, arcs
