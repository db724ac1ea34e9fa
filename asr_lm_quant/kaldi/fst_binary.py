"""OpenFst binary form of Kaldi lattices (what ``lat.N.gz`` holds after each ``key ``).

Layout (little-endian), as OpenFst's ``VectorFst::Write`` produces it and Kaldi's holders read it:

* header: magic int32 2125659606 (``d6 fd b2 7e``); fst type and arc type, each an int32 length then the
  bytes (``vector``; ``compactlattice44`` or ``lattice4``); version int32 (2); flags int32 (0: no symbol
  tables, not aligned); properties uint64; start int64; number of states int64; number of arcs int64
  (``VectorFst`` leaves it 0 because it knows the state count up front, so it is never trusted).
* per state: final weight, arc count int64, then per arc ilabel int32, olabel int32, weight, nextstate int32.
* LatticeWeight: graph cost float32, acoustic cost float32. CompactLatticeWeight: that, then an int32 count
  and that many int32 transition-ids. Zero (a non-final state's final weight) is (+inf, +inf, []).

Reading also accepts the double-precision arc types ``lattice8`` and ``compactlattice84`` (as Kaldi does).
Properties are computed as OpenFst's ``ComputeProperties`` would when a lattice did not come from a file.
"""

from __future__ import annotations

import struct

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.lattice import Lattice, offsets_from_lengths
from asr_lm_quant.kaldi.stream import ByteReader

MAGIC = 2125659606
MAGIC_BYTES = struct.pack("<i", MAGIC)
FILE_VERSION = 2
# Arc type -> (compact?, bytes per float).
ARC_TYPES = {"compactlattice44": (True, 4), "lattice4": (False, 4),
             "compactlattice84": (True, 8), "lattice8": (False, 8)}
MAX_ALIGNMENT = 1 << 24  # transition-ids on one arc (46 h at 10 ms): more means a corrupt count

# OpenFst property bits.
K_EXPANDED, K_MUTABLE = 0x1, 0x2
K_ACCEPTOR, K_NOT_ACCEPTOR = 0x10000, 0x20000
K_IDET, K_NON_IDET = 0x40000, 0x80000
K_ODET, K_NON_ODET = 0x100000, 0x200000
K_EPS, K_NO_EPS = 0x400000, 0x800000
K_IEPS, K_NO_IEPS = 0x1000000, 0x2000000
K_OEPS, K_NO_OEPS = 0x4000000, 0x8000000
K_ISORTED, K_NOT_ISORTED = 0x10000000, 0x20000000
K_OSORTED, K_NOT_OSORTED = 0x40000000, 0x80000000
K_WEIGHTED, K_UNWEIGHTED = 0x100000000, 0x200000000
K_CYCLIC, K_ACYCLIC = 0x400000000, 0x800000000
K_INIT_CYCLIC, K_INIT_ACYCLIC = 0x1000000000, 0x2000000000
K_TOPSORTED, K_NOT_TOPSORTED = 0x4000000000, 0x8000000000
K_ACCESSIBLE, K_NOT_ACCESSIBLE = 0x10000000000, 0x20000000000
K_COACCESSIBLE, K_NOT_COACCESSIBLE = 0x40000000000, 0x80000000000
K_STRING, K_NOT_STRING = 0x100000000000, 0x200000000000
K_WEIGHTED_CYCLES, K_UNWEIGHTED_CYCLES = 0x400000000000, 0x800000000000

_HDR_TAIL = struct.Struct("<iiQqqq")
_ARC_FIXED = struct.Struct("<iiffi")  # compact arc up to the alignment count (float32)
_ARC_FIXED_D = struct.Struct("<iiddi")
_LAT_ARC = np.dtype([("il", "<i4"), ("ol", "<i4"), ("g", "<f4"), ("a", "<f4"), ("next", "<i4")])
_LAT_ARC_D = np.dtype([("il", "<i4"), ("ol", "<i4"), ("g", "<f8"), ("a", "<f8"), ("next", "<i4")])


class _Ctx:
    def __init__(self, r: ByteReader, path, key):
        self.r, self.path, self.key = r, path, key

    def error(self, msg, offset=None):
        return InputError(self.path, msg, key=self.key, offset=self.r.offset if offset is None else offset)

    def take(self, fmt: struct.Struct, what: str):
        r = self.r
        if not r.need(fmt.size):
            raise self.error(f"truncated lattice: end of data while reading {what}")
        v = fmt.unpack_from(r.buf, r.pos)
        r.pos += fmt.size
        return v


_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")


def _read_string(c: _Ctx, what: str) -> str:
    at = c.r.offset
    (n,) = c.take(_I32, what)
    if n < 0 or n > 256:
        raise c.error(f"bad {what} length {n} (not an OpenFst header?)", at)
    if not c.r.need(n):
        raise c.error(f"truncated lattice: end of data while reading {what}")
    s = c.r.buf[c.r.pos:c.r.pos + n]
    c.r.pos += n
    try:
        return s.decode("ascii")
    except UnicodeDecodeError:
        raise c.error(f"{what} is not ASCII: {s[:40]!r}", at) from None


def read_fst_binary(r: ByteReader, *, path=None, key=None) -> Lattice:
    """Parse one binary lattice at the reader's position (the magic number comes first)."""
    c = _Ctx(r, path, key)
    at = r.offset
    compact, fsize, properties, start, nstates = _read_header(c)
    wfmt = struct.Struct("<ff" if fsize == 4 else "<dd")
    arc_fixed = _ARC_FIXED if fsize == 4 else _ARC_FIXED_D
    lat_dtype = _LAT_ARC if fsize == 4 else _LAT_ARC_D
    fgl, fal, flen, fali = [], [], [], []
    cols = ([], [], [], [], [], [], [], [])     # src, il, ol, g, a, dst, alen, ali
    lat_blocks = []
    for s in range(nstates):
        w_at = r.offset
        fw = c.take(wfmt, f"final weight of state {s}")
        fgl.append(fw[0])
        fal.append(fw[1])
        if compact:
            (n,) = c.take(_I32, f"final alignment length of state {s}")
            if n < 0 or n > MAX_ALIGNMENT:
                raise c.error(f"bad alignment length {n} in final weight of state {s}", w_at)
            if not r.need(4 * n):
                raise c.error("truncated lattice: end of data in a final weight's alignment")
            flen.append(n)
            if n:
                fali.append(np.frombuffer(r.buf, "<i4", n, r.pos).copy())
                r.pos += 4 * n
        else:
            flen.append(0)
        narc_at = r.offset
        (narcs,) = c.take(_I64, f"arc count of state {s}")
        if narcs < 0 or narcs >= 1 << 31:
            raise c.error(f"bad arc count {narcs} for state {s}", narc_at)
        if compact:
            _read_compact_arcs(c, s, narcs, arc_fixed, cols)
        else:
            _read_lattice_arcs(c, s, narcs, lat_dtype, lat_blocks)

    src, il, ol, g, a, dst, alen, ali = cols
    if not compact and lat_blocks:
        blocks = np.concatenate([b for _, b in lat_blocks])
        src = np.concatenate([np.full(len(b), s, np.int32) for s, b in lat_blocks])
        il, ol, g, a, dst = blocks["il"], blocks["ol"], blocks["g"], blocks["a"], blocks["next"]
        alen = np.zeros(len(blocks), np.int64)
    fg = np.asarray(fgl, np.float64)
    fa = np.asarray(fal, np.float64)
    lat = Lattice(compact, start, src, dst, il, ol, g, a, fg, fa,
                  offsets_from_lengths(np.asarray(alen, np.int64)),
                  np.concatenate(ali) if ali else np.zeros(0, np.int32),
                  offsets_from_lengths(np.asarray(flen, np.int64)),
                  np.concatenate(fali) if fali else np.zeros(0, np.int32), properties=int(properties))
    check_lattice(lat, c.error, at)
    return lat


def _read_header(c: _Ctx):
    """The checked header after the magic number: ``(compact, float size, properties, start, nstates)``."""
    r = c.r
    at = r.offset
    (magic,) = c.take(_I32, "magic number")
    if magic != MAGIC:
        raise c.error(f"bad OpenFst magic number {magic & 0xffffffff:#010x} (expected 0x7eb2fdd6)", at)
    fst_type = _read_string(c, "fst type")
    if fst_type != "vector":
        raise c.error(f"unsupported fst type {fst_type!r} (Kaldi lattices are 'vector')", at)
    arc_at = r.offset
    arc_type = _read_string(c, "arc type")
    if arc_type not in ARC_TYPES:
        raise c.error(f"unknown arc type {arc_type!r} (expected one of {', '.join(ARC_TYPES)})", arc_at)
    compact, fsize = ARC_TYPES[arc_type]
    hdr_at = r.offset
    version, flags, properties, start, nstates, _narcs = c.take(_HDR_TAIL, "header")
    if version not in (1, 2):
        raise c.error(f"unsupported vector fst version {version}", hdr_at)
    if flags & 0x7:
        raise c.error(f"header flags {flags:#x}: symbol tables or alignment in a lattice are not supported",
                      hdr_at)
    if nstates < 0 or nstates >= 1 << 31:
        raise c.error(f"bad number of states {nstates}", hdr_at)
    if not (-1 <= start < max(nstates, 0)) or (start == -1 and nstates > 0):
        raise c.error(f"start state {start} out of range (lattice has {nstates} states)", hdr_at)
    return compact, fsize, properties, start, nstates


def _read_lattice_arcs(c: _Ctx, s: int, narcs: int, lat_dtype, lat_blocks: list) -> None:
    """The ``narcs`` arcs of state ``s`` of a Lattice (fixed size), appended as numpy blocks."""
    r = c.r
    left = narcs
    while left:
        k = min(left, 1 << 16)
        if not r.need(k * lat_dtype.itemsize):
            raise c.error(f"truncated lattice: end of data in the arcs of state {s}")
        blk = np.frombuffer(r.buf, lat_dtype, k, r.pos).copy()
        r.pos += k * lat_dtype.itemsize
        lat_blocks.append((s, blk))
        left -= k


def _read_compact_arcs(c: _Ctx, s: int, narcs: int, arc_fixed, cols) -> None:
    """The ``narcs`` arcs of state ``s`` of a CompactLattice (each with its alignment), appended to ``cols``."""
    r = c.r
    src, il, ol, g, a, dst, alen, ali = cols
    buf, pos = r.buf, r.pos
    for _ in range(narcs):
        if len(buf) - pos < arc_fixed.size:
            r.pos = pos
            if not r.need(arc_fixed.size):
                raise c.error(f"truncated lattice: end of data in the arcs of state {s}")
            buf, pos = r.buf, r.pos
        i1, o1, w1, w2, n = arc_fixed.unpack_from(buf, pos)
        pos += arc_fixed.size
        if n < 0 or n > MAX_ALIGNMENT:
            raise c.error(f"bad alignment length {n} on an arc of state {s}", r.base + pos - 4)
        if len(buf) - pos < 4 * n + 4:
            r.pos = pos
            if not r.need(4 * n + 4):
                raise c.error(f"truncated lattice: end of data in the arcs of state {s}")
            buf, pos = r.buf, r.pos
        if n:
            ali.append(np.frombuffer(buf, "<i4", n, pos))
        (d,) = _I32.unpack_from(buf, pos + 4 * n)
        pos += 4 * n + 4
        src.append(s), il.append(i1), ol.append(o1), g.append(w1), a.append(w2)
        dst.append(d), alen.append(n)
    r.pos = pos


def check_lattice(lat: Lattice, error, at) -> None:
    """Reject what no valid lattice holds: next states out of range, NaN or half-infinite costs."""
    ns = lat.num_states
    if lat.num_arcs and (lat.dst.min() < 0 or lat.dst.max() >= ns):
        bad = np.flatnonzero((lat.dst < 0) | (lat.dst >= ns))
        i = bad[0]
        raise error(f"state id {lat.dst[i]} out of range on an arc of state {lat.src[i]} "
                    f"(lattice has {ns} states)", at)
    # Arc costs are almost always all finite: one test each, the detailed ones only when it fails.
    arcs_finite = np.isfinite(lat.graph).all() and np.isfinite(lat.acoustic).all()
    for what, g, a in (("arc", lat.graph, lat.acoustic), ("final", lat.final_graph, lat.final_acoustic)):
        if what == "arc" and arcs_finite:
            continue
        if np.isnan(g).any() or np.isnan(a).any():
            raise error(f"NaN cost in a{'n' if what == 'arc' else ''} {what} weight", at)
        half = np.isinf(g) != np.isinf(a)
        if half.any():
            raise error(f"{what} weight with one infinite cost ({g[half][0]}, {a[half][0]})", at)
    if not arcs_finite and lat.num_arcs and np.isinf(lat.graph).any():
        raise error("arc with weight Zero (infinite cost)", at)
    if np.any(lat.final_graph == -np.inf):
        raise error("final weight with cost -inf", at)


def string_properties(lat: Lattice) -> int:
    """The property bits of ``lat`` known to be a string (states 0..n in a chain, the last one final)."""
    il, ol = lat.ilabel, lat.olabel
    p = (K_EXPANDED | K_MUTABLE | K_IDET | K_ODET | K_ISORTED | K_OSORTED | K_ACYCLIC | K_INIT_ACYCLIC
         | K_TOPSORTED | K_ACCESSIBLE | K_COACCESSIBLE | K_STRING | K_UNWEIGHTED_CYCLES)
    acceptor = il is ol or np.array_equal(il, ol)
    p |= K_ACCEPTOR if acceptor else K_NOT_ACCEPTOR
    i_eps = bool((il == 0).any())
    o_eps = i_eps if acceptor else bool((ol == 0).any())
    both_eps = i_eps if acceptor else bool(((il == 0) & (ol == 0)).any())
    p |= (K_EPS if both_eps else K_NO_EPS) | (K_IEPS if i_eps else K_NO_IEPS) | (K_OEPS if o_eps else K_NO_OEPS)
    weighted = (len(lat.ali) > 0 or len(lat.final_ali) > 0 or lat.final_graph[-1] != 0
                or lat.final_acoustic[-1] != 0 or lat.graph.any() or lat.acoustic.any())
    return p | (K_WEIGHTED if weighted else K_UNWEIGHTED)


def compute_properties(lat: Lattice) -> int:
    """The OpenFst property bits of ``lat`` (all binary properties known), plus kExpanded|kMutable."""
    p = K_EXPANDED | K_MUTABLE
    ns, na = lat.num_states, lat.num_arcs
    if ns == 0:
        return p | (K_ACCEPTOR | K_IDET | K_ODET | K_NO_EPS | K_NO_IEPS | K_NO_OEPS | K_ISORTED | K_OSORTED
                    | K_UNWEIGHTED | K_ACYCLIC | K_INIT_ACYCLIC | K_TOPSORTED | K_ACCESSIBLE
                    | K_COACCESSIBLE | K_STRING | K_UNWEIGHTED_CYCLES)
    src, dst, il, ol = lat.src, lat.dst, lat.ilabel, lat.olabel

    def pick(cond, yes, no):
        return yes if cond else no

    final = lat.is_final()
    if (lat.start == 0 and ns == na + 1 and final[-1] and final.sum() == 1 and np.array_equal(src, np.arange(na))
            and np.array_equal(dst, src + 1)):
        # A string (one path: what n-best extraction writes): only the labels and weights need looking at.
        return string_properties(lat)

    p |= pick(np.array_equal(il, ol), K_ACCEPTOR, K_NOT_ACCEPTOR)
    same_src = src[1:] == src[:-1] if na else np.zeros(0, bool)
    # Deterministic: no two arcs of a state share a label.
    one_arc_each = not same_src.any()  # linear lattices (n-best paths): deterministic without a search
    for lab, yes, no in ((il, K_IDET, K_NON_IDET), (ol, K_ODET, K_NON_ODET)):
        pairs = na if one_arc_each else np.unique(np.stack([src, lab]), axis=1).shape[1]
        p |= pick(pairs == na, yes, no)
    p |= pick(not np.any((il == 0) & (ol == 0)), K_NO_EPS, K_EPS)
    p |= pick(not np.any(il == 0), K_NO_IEPS, K_IEPS)
    p |= pick(not np.any(ol == 0), K_NO_OEPS, K_OEPS)
    p |= pick(not np.any(same_src & (il[1:] < il[:-1])), K_ISORTED, K_NOT_ISORTED)
    p |= pick(not np.any(same_src & (ol[1:] < ol[:-1])), K_OSORTED, K_NOT_OSORTED)
    arc_one = (lat.graph == 0) & (lat.acoustic == 0) & (np.diff(lat.ali_offsets) == 0)
    final = lat.is_final()
    final_one = (lat.final_graph == 0) & (lat.final_acoustic == 0) & (np.diff(lat.final_ali_offsets) == 0)
    weighted = (not arc_one.all()) or bool(np.any(final & ~final_one))
    p |= pick(weighted, K_WEIGHTED, K_UNWEIGHTED)

    topsorted = not np.any(dst <= src)
    if topsorted and na <= 4096:
        # Acyclic, every state in its own component; reachability in one pass each way over the arcs
        # (sorted by source, every arc going forward) costs less than building sparse graphs.
        scc = np.arange(ns)
        on_cycle = np.zeros(ns, bool)
        reach = np.zeros(ns, bool)
        if lat.start >= 0:
            reach[lat.start] = True
        for a, b in zip(src.tolist(), dst.tolist()):
            if reach[a]:
                reach[b] = True
        coreach = final.copy()
        for a, b in zip(src[::-1].tolist(), dst[::-1].tolist()):
            if coreach[b]:
                coreach[a] = True
        accessible, coaccessible = bool(reach.all()), bool(coreach.all())
    else:
        from asr_lm_quant.kaldi.algorithms import coreachable, reachable_from_start, scc_ids
        scc = scc_ids(lat)
        counts = np.bincount(scc, minlength=scc.max() + 1 if ns else 0)
        self_loop = np.zeros(ns, bool)
        self_loop[src[src == dst]] = True
        on_cycle = (counts[scc] > 1) | self_loop
        accessible, coaccessible = bool(reachable_from_start(lat).all()), bool(coreachable(lat).all())
    cyclic = bool(on_cycle.any())
    p |= pick(cyclic, K_CYCLIC, K_ACYCLIC)
    p |= pick(lat.start >= 0 and on_cycle[lat.start], K_INIT_CYCLIC, K_INIT_ACYCLIC)
    p |= pick(topsorted, K_TOPSORTED, K_NOT_TOPSORTED)
    p |= pick(accessible, K_ACCESSIBLE, K_NOT_ACCESSIBLE)
    p |= pick(coaccessible, K_COACCESSIBLE, K_NOT_COACCESSIBLE)
    # String: state 0 initial, each non-final state i has one arc to i+1, the last state is final, no more.
    outdeg = np.bincount(src, minlength=ns)
    nonfinal = ~final
    is_string = (lat.start == 0 and final[ns - 1] and not final[:-1].any()
                 and np.all(outdeg[nonfinal] == 1) and np.all(outdeg[final] == 0)
                 and np.all(dst == src + 1))
    p |= pick(is_string, K_STRING, K_NOT_STRING)
    in_cycle_arc = (scc[src] == scc[dst]) & on_cycle[src]
    p |= pick(bool(np.any(in_cycle_arc & ~arc_one)), K_WEIGHTED_CYCLES, K_UNWEIGHTED_CYCLES)
    return p


def _pack_f32(x) -> np.ndarray:
    return np.asarray(x, dtype="<f4")


def _spread(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices ``starts[i] .. starts[i] + lengths[i] - 1`` for every ``i``, concatenated."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    firsts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    return np.repeat(starts - firsts, lengths) + np.arange(total)


_SMALL = 256  # states + arcs below which a plain loop lays out a CompactLattice faster than array arithmetic


def _compact_words_small(lat: Lattice, fg, fa, offs) -> bytes:
    """The CompactLattice body of a small lattice (n-best paths, mostly), word by word in Python."""
    fg, fa = fg.view("<u4").tolist(), fa.view("<u4").tolist()
    g, a = _pack_f32(lat.graph).view("<u4").tolist(), _pack_f32(lat.acoustic).view("<u4").tolist()
    il, ol, dst = lat.ilabel.tolist(), lat.olabel.tolist(), lat.dst.tolist()
    ao, ali = lat.ali_offsets.tolist(), lat.ali.tolist()
    fo, fali = lat.final_ali_offsets.tolist(), lat.final_ali.tolist()
    offs = offs.tolist()
    words = []
    for s in range(lat.num_states):
        words += (fg[s], fa[s], fo[s + 1] - fo[s])
        words += fali[fo[s]:fo[s + 1]]
        words += (offs[s + 1] - offs[s], 0)
        for i in range(offs[s], offs[s + 1]):
            words += (il[i], ol[i], g[i], a[i], ao[i + 1] - ao[i])
            words += ali[ao[i]:ao[i + 1]]
            words.append(dst[i])
    return struct.pack(f"<{len(words)}I", *words)


def write_fst_binary(lat: Lattice) -> bytes:
    """The OpenFst binary bytes of ``lat`` (without the archive key), as Kaldi writes them."""
    props = lat.properties if lat.properties is not None else compute_properties(lat)
    arc_type = lat.arc_type.encode()
    out = [MAGIC_BYTES, struct.pack("<i", 6), b"vector", struct.pack("<i", len(arc_type)), arc_type,
           _HDR_TAIL.pack(FILE_VERSION, 0, props, lat.start, lat.num_states, 0)]
    ns = lat.num_states
    offs = lat.arc_offsets()
    fg, fa = _pack_f32(lat.final_graph), _pack_f32(lat.final_acoustic)
    if not lat.compact:
        arcs = np.empty(lat.num_arcs, _LAT_ARC)
        arcs["il"], arcs["ol"], arcs["next"] = lat.ilabel, lat.olabel, lat.dst
        arcs["g"], arcs["a"] = lat.graph, lat.acoustic
        raw = arcs.tobytes()
        sz = _LAT_ARC.itemsize
        for s in range(ns):
            out.append(struct.pack("<ffq", fg[s], fa[s], offs[s + 1] - offs[s]))
            out.append(raw[offs[s] * sz:offs[s + 1] * sz])
        return b"".join(out)
    # CompactLattice: every field is a 4-byte word (the arc count is two), state by state and arc by arc
    # in file order:
    #   state: final graph, final acoustic, n, n final transition-ids, arc count (int64)
    #   arc:   ilabel, olabel, graph, acoustic, n, n transition-ids, next state
    if lat.num_arcs + lat.num_states <= _SMALL:
        out.append(_compact_words_small(lat, fg, fa, offs))
        return b"".join(out)
    # Larger lattices: the whole body as one array of words, laid out by index arithmetic.
    na = lat.num_arcs
    fl, al = lat.final_ali_lengths(), lat.arc_ali_lengths()
    arc_words = 6 + al
    state_words = 5 + fl + np.bincount(lat.src, weights=arc_words, minlength=ns).astype(np.int64)
    S = np.concatenate([[0], np.cumsum(state_words)])[:-1]
    words = np.zeros(int(state_words.sum()), "<u4")
    words[S], words[S + 1], words[S + 2] = fg.view("<u4"), fa.view("<u4"), fl
    words[_spread(S + 3, fl)] = lat.final_ali
    words[S + 3 + fl] = offs[1:] - offs[:-1]  # the int64 arc count: low word (the high word stays 0)
    if na:
        C = np.concatenate([[0], np.cumsum(arc_words)])[:-1]
        src = lat.src.astype(np.int64)
        A = S[src] + 5 + fl[src] + C - C[offs[src]]
        words[A], words[A + 1] = lat.ilabel, lat.olabel
        words[A + 2], words[A + 3] = _pack_f32(lat.graph).view("<u4"), _pack_f32(lat.acoustic).view("<u4")
        words[A + 4] = al
        words[_spread(A + 5, al)] = lat.ali
        words[A + 5 + al] = lat.dst
    out.append(words.tobytes())
    return b"".join(out)
