"""Kaldi's text form of lattices (``ark,t:``).

What Kaldi's lattice holders write after ``key `` in text mode: a newline, then OpenFst's printer output with
tab-separated fields, starting with the start state and then the other states in order; for each state its
arcs, then its final weight if it is final (or if it has no arcs at all). A weight equal to One is omitted.
A blank line ends the lattice.

* CompactLattice (acceptor): arcs ``src dst word [g,a,t1_t2_...]``, finals ``state [g,a,t1_...]``.
* Lattice: arcs ``src dst tid word [g,a]``, finals ``state [g,a]``.

Floats print as C++ streams print a float (``%g``, 6 significant digits), ``Infinity`` for +inf. The reader
tells the two types apart from the lines themselves (as Kaldi's ``LatticeReader`` does) and accepts tabs or
spaces.
"""

from __future__ import annotations

import math

import numpy as np

from asr_lm_quant.kaldi.lattice import Lattice, offsets_from_lengths

INF = math.inf


def format_float(x: float) -> str:
    """A float32 cost as Kaldi's ``WriteFloatType`` prints it."""
    if x == INF:
        return "Infinity"
    if x == -INF:
        return "-Infinity"
    if x != x:
        return "BadNumber"
    return "%g" % float(np.float32(x))


def _weight(g, a, ali, compact: bool) -> str:
    w = f"{format_float(g)},{format_float(a)}"
    if compact:
        w += "," + "_".join(str(int(t)) for t in ali)
    return w


def write_fst_text(lat: Lattice) -> str:
    """The text after ``key `` for one lattice: ``\\n``, the printer's lines, and the closing blank line."""
    out = ["\n"]
    ns = lat.num_states
    if lat.start < 0:
        out.append("\n")
        return "".join(out)
    offs = lat.arc_offsets()
    g32 = lat.graph.astype(np.float32)
    a32 = lat.acoustic.astype(np.float32)
    fg32 = lat.final_graph.astype(np.float32)
    fa32 = lat.final_acoustic.astype(np.float32)
    alens = lat.arc_ali_lengths()
    order = [lat.start] + [s for s in range(ns) if s != lat.start]
    for s in order:
        for i in range(offs[s], offs[s + 1]):
            if lat.compact:
                line = f"{s}\t{lat.dst[i]}\t{lat.ilabel[i]}"
            else:
                line = f"{s}\t{lat.dst[i]}\t{lat.ilabel[i]}\t{lat.olabel[i]}"
            if g32[i] != 0 or a32[i] != 0 or alens[i]:
                line += "\t" + _weight(g32[i], a32[i], lat.arc_alignment(i), lat.compact)
            out.append(line + "\n")
        fali = lat.final_alignment(s)
        final = not (fg32[s] == INF and fa32[s] == INF)
        if final or offs[s + 1] == offs[s]:
            if fg32[s] == 0 and fa32[s] == 0 and not len(fali):
                out.append(f"{s}\n")
            else:
                out.append(f"{s}\t{_weight(fg32[s], fa32[s], fali, lat.compact)}\n")
    out.append("\n")
    return "".join(out)


class TextLatticeError(ValueError):
    """A bad line; ``line_index`` is 0-based within the lattice's lines."""

    def __init__(self, msg, line_index):
        super().__init__(msg)
        self.line_index = line_index


F32_MAX = float(np.finfo(np.float32).max)


def _float(tok: str) -> float:
    if tok in ("Infinity", "inf", "+inf", "Inf"):
        return INF
    if tok in ("-Infinity", "-inf", "-Inf"):
        return -INF
    if tok == "BadNumber":
        return math.nan
    v = float(tok)
    if math.isfinite(v) and abs(v) > F32_MAX:
        # Kaldi stores costs as float32: such a value would be written back as infinity.
        raise ValueError(f"cost {tok} is outside the float32 range")
    return v


def _label(tok: str) -> int:
    v = int(tok)
    if not 0 <= v < 1 << 31:
        raise ValueError(f"label {tok} is outside 0..2^31-1")
    return v


def _parse_weight(tok: str, n_line: int):
    """``g,a`` -> (g, a, None); ``g,a,t1_t2`` -> (g, a, [t1, t2])."""
    parts = tok.split(",")
    if len(parts) not in (2, 3):
        raise TextLatticeError(f"bad weight {tok!r} (expected 'g,a' or 'g,a,t1_t2_...')", n_line)
    try:
        g, a = _float(parts[0]), _float(parts[1])
        ali = None
        if len(parts) == 3:
            ali = [_label(t) for t in parts[2].split("_")] if parts[2] else []
    except ValueError as e:
        raise TextLatticeError(f"bad weight {tok!r} ({e})", n_line) from None
    return g, a, ali


def parse_fst_text(lines, *, prefer_compact: bool = True) -> Lattice:
    """Build a lattice from its text lines (already split into fields, blank line excluded)."""
    arcs = []  # (src, dst, il, ol, g, a, ali)
    finals = {}
    kinds = set()  # "c" compact-only evidence, "l" lattice-only evidence
    start = -1
    max_state = -1
    for n, f in enumerate(lines):
        try:
            ids = [int(x) for x in f[:2]] if len(f) >= 2 and "," not in f[1] else [int(f[0])]
        except ValueError:
            raise TextLatticeError(f"state id is not an integer in {' '.join(f)!r}", n) from None
        if any(i < 0 or i >= 1 << 31 for i in ids):
            raise TextLatticeError(f"state id out of range in {' '.join(f)!r}", n)
        if n == 0:
            start = ids[0]
        max_state = max(max_state, *ids)
        s = ids[0]
        if len(f) == 1:
            finals[s] = (0.0, 0.0, [])
        elif len(f) == 2:
            g, a, ali = _parse_weight(f[1], n)
            kinds.add("l" if ali is None else "c")
            finals[s] = (g, a, ali or [])
        elif len(f) in (3, 4, 5):
            d = ids[1]
            try:
                if len(f) == 3:
                    kinds.add("c")
                    il = ol = _label(f[2])
                    w = (0.0, 0.0, [])
                elif len(f) == 4 and "," in f[3]:
                    kinds.add("c")
                    il = ol = _label(f[2])
                    w = _parse_weight(f[3], n)
                    if w[2] is None:
                        raise TextLatticeError(f"CompactLattice weight without alignment field {f[3]!r}", n)
                elif len(f) == 4:
                    kinds.add("l")
                    il, ol = _label(f[2]), _label(f[3])
                    w = (0.0, 0.0, [])
                else:
                    kinds.add("l")
                    il, ol = _label(f[2]), _label(f[3])
                    w = _parse_weight(f[4], n)
                    if w[2] is not None:
                        raise TextLatticeError(f"Lattice arc with a CompactLattice weight {f[4]!r}", n)
            except TextLatticeError:
                raise
            except ValueError as e:
                raise TextLatticeError(f"bad label in {' '.join(f)!r} ({e})", n) from None
            arcs.append((s, d, il, ol, w[0], w[1], w[2] or []))
        else:
            raise TextLatticeError(f"bad line {' '.join(f)!r} ({len(f)} fields)", n)
        if "c" in kinds and "l" in kinds:
            raise TextLatticeError("lines mix CompactLattice and Lattice forms", n)
    num_states = max_state + 1
    if num_states > 2 * len(lines) + 2:
        raise TextLatticeError(f"state id {max_state} out of range for a lattice of {len(lines)} lines", 0)
    compact = ("c" in kinds) or (not kinds and prefer_compact)
    fg = np.full(num_states, INF)
    fa = np.full(num_states, INF)
    flens = np.zeros(num_states, np.int64)
    fali_by_state = {}
    for s, (g, a, ali) in finals.items():
        fg[s], fa[s] = g, a
        if ali:
            flens[s] = len(ali)
            fali_by_state[s] = ali
    fali = [t for s in sorted(fali_by_state) for t in fali_by_state[s]]
    cols = list(zip(*arcs)) if arcs else [[]] * 7
    alis = cols[6]
    return Lattice(compact, start, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], fg, fa,
                   offsets_from_lengths([len(x) for x in alis]), [t for x in alis for t in x],
                   offsets_from_lengths(flens), fali)
