"""Best paths of one lattice for many (LM weight, penalty) settings at once.

A scoring sweep needs the best path under every setting; walking the lattice once with a cost column per
setting is much cheaper than one shortest-path run per setting. Each setting is a triple of
(graph scale, acoustic scale, word insertion penalty), so both Kaldi conventions fit:

* ``score_kaldi_wer.sh``: ``lattice-scale --inv-acoustic-scale=LMWT | lattice-add-penalty`` ->
  ``(1, 1/LMWT, wip)``;
* Switchboard's ``local/score_sclite.sh``: ``lattice-scale --lm-scale=LMWT | lattice-add-penalty`` ->
  ``(LMWT, 1, wip)``.

The penalty is added to the graph cost of every arc with a word (``olabel != 0``), as
``lattice-add-penalty`` does. States are visited in longest-path layers (a topological order computed here),
so the lattice must be acyclic, which decoder lattices are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_lm_quant.errors import InputError


@dataclass
class BestPath:
    """One best path: its arc indices in order, the final state, its words and total scaled cost."""
    arcs: np.ndarray
    final_state: int
    words: list[int]
    cost: float


def topological_layers(lat, *, path=None, key=None) -> list[np.ndarray]:
    """States grouped so that every arc goes from an earlier group to a later one."""
    ns = lat.num_states
    indeg = np.bincount(lat.dst, minlength=ns).astype(np.int64)
    offs = lat.arc_offsets()
    layer = np.flatnonzero(indeg == 0)
    layers = []
    done = 0
    while len(layer):
        layers.append(layer)
        done += len(layer)
        starts, ends = offs[layer], offs[layer + 1]
        lens = ends - starts
        if lens.sum() == 0:
            break
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(lens.sum())
        dec = np.bincount(lat.dst[idx], minlength=ns)
        before = indeg > 0
        indeg -= dec
        layer = np.flatnonzero(before & (indeg == 0))
    if done != ns:
        raise InputError(path, "lattice has a cycle (expected an acyclic decoder lattice)", key=key)
    return layers


def best_paths(lat, graph_scale, acoustic_scale, penalty, *, path=None, key=None) -> list[BestPath | None]:
    """Best path for each setting ``k`` (``None`` where no final state is reachable)."""
    gs = np.asarray(graph_scale, dtype=np.float64)
    ac = np.asarray(acoustic_scale, dtype=np.float64)
    wp = np.asarray(penalty, dtype=np.float64)
    k = len(gs)
    if lat.start < 0 or lat.num_states == 0:
        return [None] * k
    has_word = (lat.olabel != 0).astype(np.float64)
    # Costs [A, K]; float32 rounding of the scaled weights as Kaldi stores them.
    cost = (lat.graph[:, None] * gs[None, :]).astype(np.float32).astype(np.float64)
    cost = cost + (lat.acoustic[:, None] * ac[None, :]).astype(np.float32)
    cost = cost + has_word[:, None] * wp[None, :]
    with np.errstate(invalid="ignore"):
        fcost = lat.final_graph[:, None] * gs[None, :] + lat.final_acoustic[:, None] * ac[None, :]
    fcost[~lat.is_final()] = np.inf
    fcost[np.isnan(fcost)] = np.inf

    ns = lat.num_states
    dist = np.full((ns, k), np.inf)
    dist[lat.start] = 0.0
    back = np.full((ns, k), -1, dtype=np.int64)
    layers = topological_layers(lat, path=path, key=key)
    layer_of = np.empty(ns, dtype=np.int64)
    for i, states in enumerate(layers):
        layer_of[states] = i
    if lat.num_arcs:
        arc_layer = layer_of[lat.dst]
        order = np.argsort(arc_layer, kind="stable")
        bounds = np.searchsorted(arc_layer[order], np.arange(len(layers) + 1))
        for i in range(1, len(layers)):
            idx = order[bounds[i]:bounds[i + 1]]
            if not len(idx):
                continue
            d = lat.dst[idx]
            cand = dist[lat.src[idx]] + cost[idx]
            np.minimum.at(dist, d, cand)
            rows, cols = np.nonzero((cand == dist[d]) & np.isfinite(cand))
            # Several arcs may tie; keep the first in file order (write in reverse so it lands last).
            rows, cols = rows[::-1], cols[::-1]
            back[d[rows], cols] = idx[rows]
    total = dist + fcost
    out: list[BestPath | None] = []
    for j in range(k):
        s = int(np.argmin(total[:, j]))
        if not np.isfinite(total[s, j]):
            out.append(None)
            continue
        arcs = []
        cur = s
        while cur != lat.start:
            a = back[cur, j]
            if a < 0:  # only the start state has no back-pointer
                raise InputError(path, "internal error tracing the best path", key=key)
            arcs.append(a)
            cur = int(lat.src[a])
        arcs.reverse()
        arcs = np.asarray(arcs, dtype=np.int64)
        words = [int(w) for w in lat.olabel[arcs] if w != 0]
        out.append(BestPath(arcs, s, words, float(total[s, j])))
    return out


def word_times(lat, bp: BestPath) -> list[tuple[int, int, int]]:
    """``(word, start_frame, num_frames)`` for each word of a best path, from the transition-ids.

    On a CompactLattice a word spans its arc's transition-ids (exact on word-aligned lattices, close on
    decoder output). On a Lattice (one arc per frame) a word runs from its arc to the next word's arc.
    """
    if lat.compact:
        lens = lat.arc_ali_lengths()[bp.arcs]
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else np.zeros(0, np.int64)
        return [(int(w), int(s), int(n)) for w, s, n in zip(lat.olabel[bp.arcs], starts, lens) if w != 0]
    frame = np.cumsum(lat.ilabel[bp.arcs] != 0) - (lat.ilabel[bp.arcs] != 0)
    total = int((lat.ilabel[bp.arcs] != 0).sum())
    pos = [(int(lat.olabel[a]), int(f)) for a, f in zip(bp.arcs, frame) if lat.olabel[a] != 0]
    out = []
    for i, (w, f) in enumerate(pos):
        end = pos[i + 1][1] if i + 1 < len(pos) else total
        out.append((w, f, end - f))
    return out
