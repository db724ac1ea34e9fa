"""Lattice algorithms on :class:`~asr_lm_quant.kaldi.lattice.Lattice`, in numpy (float64 accumulation).

Scores follow Kaldi's scoring pipeline (``lattice-scale --inv-acoustic-scale=LMWT | lattice-add-penalty |
lattice-best-path``): the cost of an arc is ``lm_scale * graph + acoustic_scale * acoustic +
word_ins_penalty * [word != 0]`` (the penalty is added after scaling, so it is not scaled), and a final
weight costs ``lm_scale * graph + acoustic_scale * acoustic``. Lattices from Kaldi are acyclic; functions
that need an order raise :class:`CyclicLatticeError` on a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from asr_lm_quant.kaldi.lattice import Lattice, offsets_from_lengths

INF = np.inf


class CyclicLatticeError(ValueError):
    pass


# --- graph structure -------------------------------------------------------------------------------------
def _adjacency(lat: Lattice, reverse: bool = False) -> csr_matrix:
    n = lat.num_states
    rows, cols = (lat.dst, lat.src) if reverse else (lat.src, lat.dst)
    return csr_matrix((np.ones(lat.num_arcs, np.int8), (rows, cols)), shape=(n, n))


def reachable_from_start(lat: Lattice) -> np.ndarray:
    mask = np.zeros(lat.num_states, bool)
    if lat.start >= 0:
        mask[breadth_first_order(_adjacency(lat), lat.start, directed=True, return_predecessors=False)] = True
    return mask


def coreachable(lat: Lattice) -> np.ndarray:
    """States from which a final state can be reached."""
    n = lat.num_states
    mask = lat.is_final().copy()
    if not mask.any():
        return mask
    # Breadth-first from a virtual super-final state over reversed arcs.
    rows = np.concatenate([lat.dst, np.full(mask.sum(), n)])
    cols = np.concatenate([lat.src, np.flatnonzero(mask)])
    adj = csr_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n + 1, n + 1))
    out = np.zeros(n + 1, bool)
    out[breadth_first_order(adj, n, directed=True, return_predecessors=False)] = True
    return out[:n]


def scc_ids(lat: Lattice) -> np.ndarray:
    if lat.num_states == 0:
        return np.zeros(0, np.int64)
    _, labels = connected_components(_adjacency(lat), directed=True, connection="strong")
    return labels


def connect(lat: Lattice) -> Lattice:
    """Remove states not on a path from the start to a final state (ids keep their order)."""
    if lat.start < 0:
        return lat
    keep = reachable_from_start(lat) & coreachable(lat)
    if keep.all():
        return lat
    if not keep[lat.start]:
        return Lattice.empty(lat.compact)
    new_id = np.full(lat.num_states, -1, np.int64)
    new_id[keep] = np.arange(keep.sum())
    return lat.renumber_states(new_id, int(keep.sum()))


def lattice_to_compact(lat: Lattice) -> Lattice:
    """Lattice -> CompactLattice where that is simple: chains of states with one arc in and one arc out
    (not start, not final) are merged into one arc, and each arc's ilabels become its transition-ids.

    A chain that would carry two different words is not merged (the inner epsilon arcs stay), so the
    result always has the same paths, word sequences, costs and alignments as the input.
    """
    if lat.compact:
        return lat
    ns = lat.num_states
    indeg = np.bincount(lat.dst, minlength=ns)
    outdeg = np.bincount(lat.src, minlength=ns)
    final = lat.is_final()
    mergeable = (indeg == 1) & (outdeg == 1) & ~final
    if lat.start >= 0:
        mergeable[lat.start] = False
    offs = lat.arc_offsets()
    out = {k: [] for k in ("src", "dst", "lab", "g", "a", "alen", "ali")}
    # Each mergeable state has one arc in, so it is either absorbed into the chain through it or becomes
    # the end of one (when the chain would carry two words); then its own arcs are emitted from it.
    work = [s for s in range(ns) if not mergeable[s]]
    work.reverse()
    while work:
        s = work.pop()
        for i in range(offs[s], offs[s + 1]):
            word = int(lat.olabel[i])
            ali = [int(lat.ilabel[i])] if lat.ilabel[i] else []
            g, a = lat.graph[i], lat.acoustic[i]
            d = int(lat.dst[i])
            while mergeable[d]:
                j = offs[d]
                w2 = int(lat.olabel[j])
                if w2 and word:
                    work.append(d)
                    break
                word = word or w2
                if lat.ilabel[j]:
                    ali.append(int(lat.ilabel[j]))
                g, a = g + lat.graph[j], a + lat.acoustic[j]
                d = int(lat.dst[j])
            out["src"].append(s), out["dst"].append(d), out["lab"].append(word)
            out["g"].append(g), out["a"].append(a), out["alen"].append(len(ali)), out["ali"].extend(ali)
    # Absorbed states keep their ids but lose their arcs; connect() removes them.
    clat = Lattice(True, lat.start, out["src"], out["dst"], out["lab"], out["lab"], out["g"], out["a"],
                   lat.final_graph, lat.final_acoustic, offsets_from_lengths(out["alen"]), out["ali"])
    return connect(clat)


def topological_order(lat: Lattice) -> np.ndarray:
    """States in an order where every arc goes forward (Kahn's algorithm; identity if already sorted)."""
    n = lat.num_states
    if lat.num_arcs == 0 or np.all(lat.dst > lat.src):
        return np.arange(n)
    if np.any(lat.src == lat.dst):
        raise CyclicLatticeError("lattice has a self-loop")
    indeg = np.bincount(lat.dst, minlength=n)
    offs = lat.arc_offsets()
    dst = lat.dst
    order = []
    stack = list(np.flatnonzero(indeg == 0)[::-1])
    while stack:
        s = stack.pop()
        order.append(s)
        for d in dst[offs[s]:offs[s + 1]]:
            indeg[d] -= 1
            if indeg[d] == 0:
                stack.append(d)
    if len(order) != n:
        raise CyclicLatticeError("lattice has a cycle")
    return np.asarray(order, np.int64)


def top_sort(lat: Lattice) -> Lattice:
    """A copy whose state ids are in topological order (every arc goes from a lower to a higher id)."""
    order = topological_order(lat)
    if np.array_equal(order, np.arange(lat.num_states)):
        return lat
    new_id = np.empty(lat.num_states, np.int64)
    new_id[order] = np.arange(lat.num_states)
    return lat.renumber_states(new_id, lat.num_states)


# --- weights --------------------------------------------------------------------------------------------
def arc_costs(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0) -> np.ndarray:
    c = lm_scale * lat.graph + acoustic_scale * lat.acoustic
    if word_ins_penalty:
        c = c + word_ins_penalty * (lat.olabel != 0)
    return c


def final_costs(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0) -> np.ndarray:
    final = lat.is_final()
    c = np.full(lat.num_states, INF)
    c[final] = lm_scale * lat.final_graph[final] + acoustic_scale * lat.final_acoustic[final]
    return c


def scale(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0) -> Lattice:
    """Multiply acoustic and graph costs (Kaldi's ``lattice-scale``); non-final states stay non-final."""
    final = lat.is_final()
    fg = np.where(final, lat.final_graph * lm_scale, INF)
    fa = np.where(final, lat.final_acoustic * acoustic_scale, INF)
    return lat.replace(graph=lat.graph * lm_scale, acoustic=lat.acoustic * acoustic_scale,
                       final_graph=fg, final_acoustic=fa)


def add_word_insertion_penalty(lat: Lattice, penalty: float) -> Lattice:
    """Add ``penalty`` to the graph cost of every word arc (Kaldi's ``lattice-add-penalty``)."""
    return lat.replace(graph=lat.graph + penalty * (lat.olabel != 0))


# --- paths ----------------------------------------------------------------------------------------------
@dataclass
class Path:
    """One path through a lattice. Costs are unscaled sums (graph and acoustic kept apart)."""
    words: list
    graph_cost: float
    acoustic_cost: float
    alignment: np.ndarray  # transition-ids along the path, one per frame
    arcs: np.ndarray  # arc indices in path order
    final_state: int

    @property
    def num_frames(self) -> int:
        return len(self.alignment)

    def total_cost(self, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0) -> float:
        return (lm_scale * self.graph_cost + acoustic_scale * self.acoustic_cost
                + word_ins_penalty * len(self.words))


def path_from_arcs(lat: Lattice, arcs, final_state: int) -> Path:
    arcs = np.asarray(arcs, np.int64)
    words = [int(w) for w in lat.olabel[arcs] if w != 0]
    g = float(lat.graph[arcs].sum() + lat.final_graph[final_state])
    a = float(lat.acoustic[arcs].sum() + lat.final_acoustic[final_state])
    if lat.compact:
        parts = [lat.arc_alignment(i) for i in arcs] + [lat.final_alignment(final_state)]
        ali = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    else:
        il = lat.ilabel[arcs]
        ali = il[il != 0]
    return Path(words, g, a, ali.astype(np.int32), arcs, int(final_state))


def _in_arcs(lat: Lattice):
    order = np.argsort(lat.dst, kind="stable")
    offs = np.searchsorted(lat.dst[order], np.arange(lat.num_states + 1))
    return order, offs


def shortest_distance_to_final(lat, costs, fcosts, order=None) -> np.ndarray:
    """Tropical backward costs beta[s]: the cheapest completion from s (inf if none)."""
    order = topological_order(lat) if order is None else order
    offs = lat.arc_offsets()
    beta = fcosts.copy()
    for s in order[::-1]:
        lo, hi = offs[s], offs[s + 1]
        if hi > lo:
            b = (costs[lo:hi] + beta[lat.dst[lo:hi]]).min()
            if b < beta[s]:
                beta[s] = b
    return beta


def best_path(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0) -> Path | None:
    """The cheapest path (Kaldi's ``lattice-best-path`` with these scales); None if there is none."""
    if lat.start < 0:
        return None
    costs = arc_costs(lat, acoustic_scale, lm_scale, word_ins_penalty)
    fcosts = final_costs(lat, acoustic_scale, lm_scale)
    order = topological_order(lat)
    offs = lat.arc_offsets()
    beta = fcosts.copy()
    choice = np.full(lat.num_states, -1, np.int64)  # -1: stop here (final)
    for s in order[::-1]:
        lo, hi = offs[s], offs[s + 1]
        if hi > lo:
            tot = costs[lo:hi] + beta[lat.dst[lo:hi]]
            k = int(np.argmin(tot))
            if tot[k] < beta[s]:
                beta[s] = tot[k]
                choice[s] = lo + k
    if not np.isfinite(beta[lat.start]):
        return None
    arcs = []
    s = lat.start
    while choice[s] >= 0:
        arcs.append(choice[s])
        s = int(lat.dst[choice[s]])
    return path_from_arcs(lat, arcs, s)


# --- forward-backward -------------------------------------------------------------------------------------
def _logsumexp_neg(x: np.ndarray) -> float:
    """-log(sum(exp(-x))) for costs x (inf-safe)."""
    m = x.min()
    if not np.isfinite(m):
        return m
    return m - np.log(np.exp(-(x - m)).sum())


def forward_backward(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0):
    """Log-semiring forward and backward costs: ``(alpha[S], beta[S], total_cost)``.

    ``alpha[s]`` is -log of the summed probability of paths from the start to ``s``; ``beta[s]`` from
    ``s`` to the end (final weights included); ``total_cost = beta[start]``.
    """
    n = lat.num_states
    if lat.start < 0:
        return np.zeros(0), np.zeros(0), INF
    costs = arc_costs(lat, acoustic_scale, lm_scale, word_ins_penalty)
    fcosts = final_costs(lat, acoustic_scale, lm_scale)
    order = topological_order(lat)
    offs = lat.arc_offsets()
    in_order, in_offs = _in_arcs(lat)
    alpha = np.full(n, INF)
    alpha[lat.start] = 0.0
    for s in order:
        lo, hi = in_offs[s], in_offs[s + 1]
        if hi > lo:
            idx = in_order[lo:hi]
            x = alpha[lat.src[idx]] + costs[idx]
            if s == lat.start:
                x = np.append(x, 0.0)
            alpha[s] = _logsumexp_neg(x)
    beta = fcosts.copy()
    for s in order[::-1]:
        lo, hi = offs[s], offs[s + 1]
        if hi > lo:
            beta[s] = _logsumexp_neg(np.append(costs[lo:hi] + beta[lat.dst[lo:hi]], fcosts[s]))
    return alpha, beta, float(beta[lat.start])


def arc_posteriors(lat: Lattice, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0):
    """Posterior probability of each arc and of each final weight: ``(arc_post[A], final_post[S], total)``.

    The posteriors of the arcs leaving the start state (plus its final weight) sum to 1.
    """
    alpha, beta, total = forward_backward(lat, acoustic_scale, lm_scale, word_ins_penalty)
    if not np.isfinite(total):
        return np.zeros(lat.num_arcs), np.zeros(lat.num_states), total
    costs = arc_costs(lat, acoustic_scale, lm_scale, word_ins_penalty)
    with np.errstate(invalid="ignore", over="ignore"):
        arc_post = np.exp(-(alpha[lat.src] + costs + beta[lat.dst] - total))
        fpost = np.exp(-(alpha + final_costs(lat, acoustic_scale, lm_scale) - total))
    return np.nan_to_num(arc_post), np.nan_to_num(fpost), total


def prune(lat: Lattice, beam: float, acoustic_scale=1.0, lm_scale=1.0) -> Lattice:
    """Kaldi's ``lattice-prune``: keep arcs and final weights on a path within ``beam`` of the best
    (costs scaled for the decision only), then remove dead states."""
    if lat.start < 0:
        return lat
    costs = arc_costs(lat, acoustic_scale, lm_scale)
    fcosts = final_costs(lat, acoustic_scale, lm_scale)
    order = topological_order(lat)
    in_order, in_offs = _in_arcs(lat)
    alpha = np.full(lat.num_states, INF)
    alpha[lat.start] = 0.0
    for s in order:
        lo, hi = in_offs[s], in_offs[s + 1]
        if hi > lo:
            idx = in_order[lo:hi]
            alpha[s] = min(alpha[s], (alpha[lat.src[idx]] + costs[idx]).min())
    beta = shortest_distance_to_final(lat, costs, fcosts, order)
    # A little slack so the best path survives beam 0 despite float summation order.
    limit = beta[lat.start] + beam + 1e-9 * max(1.0, abs(beta[lat.start]))
    keep = alpha[lat.src] + costs + beta[lat.dst] <= limit
    keep_final = alpha + fcosts <= limit
    return _apply_pruning(lat, keep, keep_final)


def prune_by_posterior(lat: Lattice, beam: float, acoustic_scale=1.0, lm_scale=1.0) -> Lattice:
    """Keep arcs and final weights whose posterior is at least ``exp(-beam)`` (log-semiring beam)."""
    if lat.start < 0:
        return lat
    arc_post, fpost, _ = arc_posteriors(lat, acoustic_scale, lm_scale)
    floor = np.exp(-beam)
    return _apply_pruning(lat, arc_post >= floor, fpost >= floor)


def _apply_pruning(lat, keep, keep_final) -> Lattice:
    final = lat.is_final() & keep_final
    out = lat.select_arcs(keep)
    out = out.replace(final_graph=np.where(final, lat.final_graph, INF),
                      final_acoustic=np.where(final, lat.final_acoustic, INF))
    return connect(out)


# --- time -------------------------------------------------------------------------------------------------
def arc_frames(lat: Lattice) -> np.ndarray:
    """Frames consumed by each arc: its transition-id count (CompactLattice) or 1 per non-zero ilabel."""
    return lat.arc_ali_lengths() if lat.compact else (lat.ilabel != 0).astype(np.int64)


def state_times(lat: Lattice) -> np.ndarray:
    """Frame index at which each state is entered (Kaldi's ``LatticeStateTimes``); -1 if unreachable.

    Raises ValueError if two paths reach a state at different times (not a valid Kaldi lattice).
    """
    times = np.full(lat.num_states, -1, np.int64)
    if lat.start < 0:
        return times
    order = topological_order(lat)
    frames = arc_frames(lat)
    in_order, in_offs = _in_arcs(lat)
    times[lat.start] = 0
    for s in order:
        lo, hi = in_offs[s], in_offs[s + 1]
        if hi > lo:
            idx = in_order[lo:hi]
            src_t = times[lat.src[idx]]
            ok = src_t >= 0
            if not ok.any():
                continue
            t = src_t[ok] + frames[idx][ok]
            if t.min() != t.max() or (s == lat.start and t.min() != 0):
                raise ValueError(f"state {s} is reached at different frames ({t.min()} and {t.max()})")
            times[s] = t[0]
    return times


def num_frames(lat: Lattice) -> int:
    """The number of frames of the utterance (the frame count of any complete path)."""
    if lat.start < 0:
        return 0
    times = state_times(lat)
    final = np.flatnonzero(lat.is_final() & (times >= 0))
    if not len(final):
        return 0
    if lat.compact:
        ends = times[final] + lat.final_ali_lengths()[final]
    else:
        ends = times[final]
    return int(ends.max())
