"""Our lattice type: a Kaldi CompactLattice or Lattice held in columnar numpy arrays.

One class, :class:`Lattice`, holds both Kaldi lattice types; ``lat.compact`` says which:

* **CompactLattice** (``compact=True``, OpenFst arc type ``compactlattice44``): an acceptor over words.
  ``ilabel == olabel == word id`` (0 is epsilon). Each arc's weight is (graph cost, acoustic cost,
  transition-ids), the transition-ids being the per-frame alignment of that word; a final weight also has
  (graph, acoustic, transition-ids).
* **Lattice** (``compact=False``, arc type ``lattice4``): a transducer with ``ilabel`` = transition-id (one arc
  per frame, 0 = no frame) and ``olabel`` = word id (0 = epsilon). Weights are (graph cost, acoustic cost) only;
  the alignment arrays are empty.

Layout (``A`` arcs, ``S`` states; states are ``0..S-1``; ``start`` is -1 only for the empty lattice):

=====================  ===========  ====================================================================
field                  dtype/shape  meaning
=====================  ===========  ====================================================================
``src``, ``dst``       int32 [A]    arc source / next state. Arcs are sorted by ``src`` (stable), so the
                                    arcs of state ``s`` are ``arc_offsets()[s]:arc_offsets()[s+1]`` in
                                    file order.
``ilabel``/``olabel``  int32 [A]    labels as above.
``graph``              float64 [A]  graph cost (LM + transition + pronunciation + silence), Kaldi value1.
``acoustic``           float64 [A]  acoustic cost, Kaldi value2.
``ali_offsets``        int64 [A+1]  arc ``i``'s transition-ids are ``ali[ali_offsets[i]:ali_offsets[i+1]]``.
``ali``                int32 [*]    all arcs' transition-ids, flat (empty for a Lattice).
``final_graph``        float64 [S]  final weight per state; ``+inf`` in both means "not final" (Zero).
``final_acoustic``     float64 [S]
``final_ali_offsets``  int64 [S+1]  transition-ids of each state's final weight (CompactLattice only).
``final_ali``          int32 [*]
``properties``         int or None  OpenFst property bits read from a binary file; written back unchanged
                                    by the binary writer so that copying a lattice is byte-exact. Functions
                                    that build a new lattice leave it ``None`` and the writer computes them.
=====================  ===========  ====================================================================

Costs are negated natural-log probabilities, as in Kaldi. They are stored in float64 for arithmetic; the
writers round them to float32, which is what Kaldi's files hold, so a value read from a file is written back
bit for bit. The arrays are treated as immutable: functions return new lattices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INF = float("inf")


def _i32(a):
    return np.ascontiguousarray(a, dtype=np.int32)


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def offsets_from_lengths(lengths):
    """``[0, l0, l0+l1, ...]``: where each of a run of variable-length rows starts in the flat array."""
    off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    return off


@dataclass(eq=False)
class Lattice:
    compact: bool
    start: int
    src: np.ndarray
    dst: np.ndarray
    ilabel: np.ndarray
    olabel: np.ndarray
    graph: np.ndarray
    acoustic: np.ndarray
    final_graph: np.ndarray
    final_acoustic: np.ndarray
    ali_offsets: np.ndarray | None = None
    ali: np.ndarray | None = None
    final_ali_offsets: np.ndarray | None = None
    final_ali: np.ndarray | None = None
    properties: int | None = field(default=None)

    def __post_init__(self):
        self.src, self.dst = _i32(self.src), _i32(self.dst)
        self.ilabel, self.olabel = _i32(self.ilabel), _i32(self.olabel)
        self.graph, self.acoustic = _f64(self.graph), _f64(self.acoustic)
        self.final_graph, self.final_acoustic = _f64(self.final_graph), _f64(self.final_acoustic)
        na, ns = len(self.src), len(self.final_graph)
        if self.ali_offsets is None:
            self.ali_offsets = np.zeros(na + 1, dtype=np.int64)
            self.ali = np.zeros(0, dtype=np.int32)
        if self.final_ali_offsets is None:
            self.final_ali_offsets = np.zeros(ns + 1, dtype=np.int64)
            self.final_ali = np.zeros(0, dtype=np.int32)
        self.ali_offsets = np.ascontiguousarray(self.ali_offsets, dtype=np.int64)
        self.final_ali_offsets = np.ascontiguousarray(self.final_ali_offsets, dtype=np.int64)
        self.ali, self.final_ali = _i32(self.ali), _i32(self.final_ali)
        self.start = int(self.start)
        if na and np.any(self.src[1:] < self.src[:-1]):
            order = np.argsort(self.src, kind="stable")
            self._reorder_arcs(order)

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def empty(cls, compact: bool = True) -> "Lattice":
        z = np.zeros(0)
        return cls(compact, -1, z, z, z, z, z, z, z, z)

    @classmethod
    def from_arcs(cls, arcs, finals, *, start: int = 0, num_states: int | None = None,
                  compact: bool = True) -> "Lattice":
        """Build from Python lists (handy in tests and small tools).

        ``arcs``: ``(src, dst, ilabel, olabel, graph, acoustic[, transition_ids])``;
        ``finals``: ``{state: (graph, acoustic[, transition_ids])}``.
        """
        arcs = list(arcs)
        n = num_states
        if n is None:
            n = 1 + max([start] + [max(a[0], a[1]) for a in arcs] + list(finals))
        fg = np.full(n, INF)
        fa = np.full(n, INF)
        fali = [[] for _ in range(n)]
        for s, w in finals.items():
            fg[s], fa[s] = w[0], w[1]
            if len(w) > 2:
                fali[s] = list(w[2])
        alis = [list(a[6]) if len(a) > 6 else [] for a in arcs]
        col = lambda j: [a[j] for a in arcs]  # noqa: E731
        return cls(compact, start, col(0), col(1), col(2), col(3), col(4), col(5), fg, fa,
                   offsets_from_lengths([len(x) for x in alis]), [t for x in alis for t in x],
                   offsets_from_lengths([len(x) for x in fali]), [t for x in fali for t in x])

    # --- shape and access --------------------------------------------------------------------------
    @property
    def num_states(self) -> int:
        return len(self.final_graph)

    @property
    def num_arcs(self) -> int:
        return len(self.src)

    @property
    def arc_type(self) -> str:
        return "compactlattice44" if self.compact else "lattice4"

    def arc_offsets(self) -> np.ndarray:
        """``[S+1]``: the arcs leaving state ``s`` are ``arc_offsets[s]:arc_offsets[s+1]``."""
        return np.searchsorted(self.src, np.arange(self.num_states + 1), side="left").astype(np.int64)

    def is_final(self) -> np.ndarray:
        return np.isfinite(self.final_graph) | np.isfinite(self.final_acoustic)

    def arc_alignment(self, i: int) -> np.ndarray:
        return self.ali[self.ali_offsets[i]:self.ali_offsets[i + 1]]

    def final_alignment(self, s: int) -> np.ndarray:
        return self.final_ali[self.final_ali_offsets[s]:self.final_ali_offsets[s + 1]]

    def arc_ali_lengths(self) -> np.ndarray:
        return np.diff(self.ali_offsets)

    def final_ali_lengths(self) -> np.ndarray:
        return np.diff(self.final_ali_offsets)

    def __repr__(self):
        kind = "CompactLattice" if self.compact else "Lattice"
        return f"<{kind} states={self.num_states} arcs={self.num_arcs} start={self.start}>"

    def equals(self, other: "Lattice", *, float32: bool = True, rtol: float = 0.0) -> bool:
        """Same structure, labels, alignments and weights (compared as float32 when ``float32``; with
        ``rtol`` > 0 weights may differ by that relative amount, as after Kaldi's 6-digit text form)."""
        if self.compact != other.compact or self.start != other.start:
            return False
        cast = (lambda a: a.astype(np.float32)) if float32 else (lambda a: a)
        for name in ("src", "dst", "ilabel", "olabel", "ali_offsets", "ali", "final_ali_offsets",
                     "final_ali"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                return False
        for name in ("graph", "acoustic", "final_graph", "final_acoustic"):
            a, b = cast(getattr(self, name)), cast(getattr(other, name))
            if rtol:
                if not np.allclose(a, b, rtol=rtol, atol=1e-6):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True

    # --- copies with changes ------------------------------------------------------------------------
    def replace(self, **changes) -> "Lattice":
        """A copy with some fields replaced (``properties`` is dropped unless given)."""
        fields = dict(compact=self.compact, start=self.start, src=self.src, dst=self.dst,
                      ilabel=self.ilabel, olabel=self.olabel, graph=self.graph, acoustic=self.acoustic,
                      final_graph=self.final_graph, final_acoustic=self.final_acoustic,
                      ali_offsets=self.ali_offsets, ali=self.ali,
                      final_ali_offsets=self.final_ali_offsets, final_ali=self.final_ali, properties=None)
        fields.update(changes)
        return Lattice(**fields)

    def _reorder_arcs(self, order):
        lens = np.diff(self.ali_offsets)[order]
        if len(self.ali):
            starts = self.ali_offsets[:-1][order]
            idx = np.repeat(starts - offsets_from_lengths(lens)[:-1], lens) + np.arange(lens.sum())
            self.ali = self.ali[idx]
        self.ali_offsets = offsets_from_lengths(lens)
        for name in ("src", "dst", "ilabel", "olabel", "graph", "acoustic"):
            setattr(self, name, getattr(self, name)[order])

    def select_arcs(self, keep: np.ndarray, **columns) -> "Lattice":
        """A copy that keeps only the arcs where ``keep`` (bool mask or indices) is true.

        ``columns`` (``src=``, ``dst=``, ...: one value per kept arc) replace those arc columns in the same
        construction, so that the arcs are grouped by their *new* source states with everything else
        following them. Never select first and replace ``src`` afterwards: selecting re-groups the arcs by
        the old source states, and the replacement would then pair labels and costs with the wrong arcs.
        """
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        lens = np.diff(self.ali_offsets)[idx]
        starts = self.ali_offsets[:-1][idx]
        ali_idx = np.repeat(starts - offsets_from_lengths(lens)[:-1], lens) + np.arange(lens.sum(), dtype=np.int64)
        fields = dict(src=self.src[idx], dst=self.dst[idx], ilabel=self.ilabel[idx], olabel=self.olabel[idx],
                      graph=self.graph[idx], acoustic=self.acoustic[idx])
        fields.update(columns)
        return self.replace(**fields, ali_offsets=offsets_from_lengths(lens), ali=self.ali[ali_idx])

    def renumber_states(self, new_id: np.ndarray, num_states: int) -> "Lattice":
        """Map state ``s`` to ``new_id[s]`` (``-1`` drops it, with its arcs); arcs stay in a valid order."""
        new_id = np.asarray(new_id, dtype=np.int64)
        keep = (new_id[self.src] >= 0) & (new_id[self.dst] >= 0) if self.num_arcs else np.zeros(0, bool)
        old_of_new = np.full(num_states, -1, dtype=np.int64)
        kept = np.flatnonzero(new_id >= 0)
        old_of_new[new_id[kept]] = kept
        if np.any(old_of_new < 0):
            raise ValueError("renumber_states: new ids must cover 0..num_states-1")
        flens = np.diff(self.final_ali_offsets)[old_of_new]
        fstarts = self.final_ali_offsets[:-1][old_of_new]
        fidx = np.repeat(fstarts - offsets_from_lengths(flens)[:-1], flens) + np.arange(flens.sum(), dtype=np.int64)
        start = int(new_id[self.start]) if self.start >= 0 else -1
        lat = self.select_arcs(keep, src=new_id[self.src[keep]], dst=new_id[self.dst[keep]])
        return lat.replace(start=start, final_graph=self.final_graph[old_of_new],
                           final_acoustic=self.final_acoustic[old_of_new],
                           final_ali_offsets=offsets_from_lengths(flens), final_ali=self.final_ali[fidx])


def linear_lattice(words, graph_cost: float = 0.0, acoustic_cost: float = 0.0, *,
                   word_alignments=None, final_alignment=()) -> Lattice:
    """A linear CompactLattice for one hypothesis, as Kaldi's ``linear-to-nbest`` makes it.

    The word arcs carry weight One and the whole (graph, acoustic) cost sits on the final weight, as
    ``linear-to-nbest`` does when it has no alignment. ``word_alignments`` (one transition-id list per word)
    puts an alignment on each arc; ``final_alignment`` goes on the final weight.
    """
    words = [int(w) for w in words]
    n = len(words)
    alis = [list(a) for a in word_alignments] if word_alignments is not None else [[] for _ in words]
    if len(alis) != n:
        raise ValueError(f"linear_lattice: {n} words but {len(alis)} word alignments")
    arcs = [(i, i + 1, w, w, 0.0, 0.0, alis[i]) for i, w in enumerate(words)]
    return Lattice.from_arcs(arcs, {n: (graph_cost, acoustic_cost, list(final_alignment))},
                             num_states=n + 1)


def union_lattices(lats) -> Lattice:
    """One lattice whose paths are the union of the paths of ``lats`` (as ``nbest-to-lattice`` builds it).

    A new start state 0 gets an epsilon arc of weight One to each input's start state.
    """
    lats = [lt for lt in lats if lt.start >= 0]
    if not lats:
        return Lattice.empty()
    compact = lats[0].compact
    if any(lt.compact != compact for lt in lats):
        raise ValueError("union_lattices: mixed CompactLattice and Lattice")
    base = 1
    parts = {k: [] for k in ("src", "dst", "il", "ol", "g", "a", "alen", "ali", "fg", "fa", "flen", "fali")}
    starts = []
    for lt in lats:
        starts.append(base + lt.start)
        parts["src"].append(lt.src + base)
        parts["dst"].append(lt.dst + base)
        parts["il"].append(lt.ilabel)
        parts["ol"].append(lt.olabel)
        parts["g"].append(lt.graph)
        parts["a"].append(lt.acoustic)
        parts["alen"].append(lt.arc_ali_lengths())
        parts["ali"].append(lt.ali)
        parts["fg"].append(lt.final_graph)
        parts["fa"].append(lt.final_acoustic)
        parts["flen"].append(lt.final_ali_lengths())
        parts["fali"].append(lt.final_ali)
        base += lt.num_states
    k = len(starts)
    cat = np.concatenate
    return Lattice(
        compact, 0,
        cat([np.zeros(k, np.int32)] + parts["src"]), cat([np.array(starts, np.int32)] + parts["dst"]),
        cat([np.zeros(k, np.int32)] + parts["il"]), cat([np.zeros(k, np.int32)] + parts["ol"]),
        cat([np.zeros(k)] + parts["g"]), cat([np.zeros(k)] + parts["a"]),
        cat([[INF]] + parts["fg"]), cat([[INF]] + parts["fa"]),
        offsets_from_lengths(cat([np.zeros(k, np.int64)] + parts["alen"])), cat(parts["ali"]),
        offsets_from_lengths(cat([[0]] + parts["flen"])), cat(parts["fali"]))


def compact_to_lattice(clat: Lattice) -> Lattice:
    """CompactLattice -> Lattice, as Kaldi's ``ConvertLattice`` does (transition-ids become ilabels).

    An arc with transition-ids ``t1..tn`` and word ``w`` becomes a chain of ``n`` arcs (one if ``n`` is 0):
    the first has ilabel ``t1``, olabel ``w`` and the whole weight, the rest ``ti:0`` with weight One. A final
    weight with transition-ids becomes a chain of ``ti:0`` arcs to a new final state.
    """
    if not clat.compact:
        return clat
    ns = clat.num_states
    src, dst, il, ol, g, a = [], [], [], [], [], []
    fg = list(clat.final_graph)
    fa = list(clat.final_acoustic)
    next_state = ns
    offs = clat.arc_offsets()
    for s in range(ns):
        fali = clat.final_alignment(s)
        if len(fali) and np.isfinite(fg[s]):
            cur = s
            for n, t in enumerate(fali):
                src.append(cur), dst.append(next_state), il.append(int(t)), ol.append(0)
                g.append(fg[s] if n == 0 else 0.0), a.append(fa[s] if n == 0 else 0.0)
                cur = next_state
                next_state += 1
                fg.append(INF), fa.append(INF)
            fg[cur], fa[cur] = 0.0, 0.0
            fg[s], fa[s] = INF, INF
        for i in range(offs[s], offs[s + 1]):
            ali = clat.arc_alignment(i)
            word = int(clat.olabel[i])
            if len(ali) <= 1:
                src.append(s), dst.append(int(clat.dst[i])), il.append(int(ali[0]) if len(ali) else 0)
                ol.append(word), g.append(clat.graph[i]), a.append(clat.acoustic[i])
                continue
            cur = s
            for n, t in enumerate(ali):
                last = n + 1 == len(ali)
                nxt = int(clat.dst[i]) if last else next_state
                src.append(cur), dst.append(nxt), il.append(int(t)), ol.append(word if n == 0 else 0)
                g.append(clat.graph[i] if n == 0 else 0.0), a.append(clat.acoustic[i] if n == 0 else 0.0)
                if not last:
                    cur = next_state
                    next_state += 1
                    fg.append(INF), fa.append(INF)
    return Lattice(False, clat.start, src, dst, il, ol, g, a, fg, fa)

