"""Random lattices shaped like Kaldi's decoding output, for tests and benchmarks.

``random_compact_lattice`` makes a top-sorted, connected CompactLattice: every state has a frame time, every
arc's transition-id count is the time it spans, every complete path covers ``num_frames`` frames, some arcs
are epsilon (silence) arcs, and a few final weights carry the last frames' alignment.
"""

from __future__ import annotations

import numpy as np

from asr_lm_quant.kaldi.lattice import Lattice, offsets_from_lengths


def random_compact_lattice(rng: np.random.Generator, *, num_frames: int = 100, num_states: int = 30,
                           arcs_per_state: float = 3.0, vocab: int = 1000, max_tid: int = 5000,
                           eps_prob: float = 0.1, acoustic_scale: float = 10.0) -> Lattice:
    final_tail = 2 if num_frames > 4 else 0
    num_states = max(2, min(num_states, num_frames - final_tail + 1))
    inner = np.sort(rng.choice(np.arange(1, num_frames - final_tail), size=num_states - 2, replace=False)) \
        if num_states > 2 else np.zeros(0, np.int64)
    times = np.concatenate([[0], inner, [num_frames]]).astype(np.int64)
    n = len(times)
    src, dst = [], []
    for s in range(n - 1):
        src.append(s), dst.append(s + 1)
        extra = rng.poisson(max(arcs_per_state - 1, 0))
        for _ in range(extra):
            d = int(rng.integers(s + 1, min(n, s + 6)))  # words span a few states, as in real lattices
            src.append(s), dst.append(d)
    src, dst = np.array(src), np.array(dst)
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    span = times[dst] - times[src]
    words = rng.integers(1, vocab, size=len(src))
    words[rng.random(len(src)) < eps_prob] = 0
    ali = rng.integers(1, max_tid, size=int(span.sum())).astype(np.int32)
    graph = rng.gamma(2.0, 3.0, size=len(src)) * (words != 0) + rng.random(len(src))
    acoustic = span * rng.normal(1.0, 0.2, size=len(src)).clip(0.1) * acoustic_scale
    fg = np.full(n, np.inf)
    fa = np.full(n, np.inf)
    fg[n - 1], fa[n - 1] = float(rng.random() * 2), 0.0
    flens = np.zeros(n, np.int64)
    fali = np.zeros(0, np.int32)
    # A state exactly final_tail frames before the end may also end the utterance through its final weight.
    tail = np.flatnonzero(times == num_frames - final_tail) if final_tail else []
    if len(tail):
        s = int(tail[0])
        fg[s], fa[s] = float(rng.random() * 3), float(final_tail * acoustic_scale)
        flens[s] = final_tail
        fali = rng.integers(1, max_tid, size=final_tail).astype(np.int32)
    return Lattice(True, 0, src, dst, words, words, graph.astype(np.float32), acoustic.astype(np.float32),
                   fg, fa, offsets_from_lengths(span), ali, offsets_from_lengths(flens), fali)


def with_parallel_arcs(rng: np.random.Generator, lat: Lattice, fraction: float = 0.2) -> Lattice:
    """``lat`` plus a copy of about ``fraction`` of its arcs (same states, word and alignment, other costs),
    as word-level lattices have when one word is reached through different pronunciations or contexts."""
    pick = np.flatnonzero(rng.random(lat.num_arcs) < fraction)
    idx = np.concatenate([np.arange(lat.num_arcs), pick])
    out = lat.select_arcs(np.sort(idx, kind="stable"))
    extra = np.zeros(out.num_arcs, bool)
    # The copies are the later member of each pair of equal indices.
    s = np.sort(idx, kind="stable")
    extra[1:] = s[1:] == s[:-1]
    bump = rng.gamma(1.0, 2.0, size=out.num_arcs) * extra
    return out.replace(graph=(out.graph + bump).astype(np.float32).astype(np.float64))


def permute_states(rng: np.random.Generator, lat: Lattice, *, shuffle_arcs: bool = True) -> Lattice:
    """The same lattice with its state ids randomly permuted (start state anywhere, arcs into lower ids), as
    Kaldi's determinization leaves them; ``shuffle_arcs`` also shuffles the order of each state's arcs."""
    if lat.num_states == 0:
        return lat
    if shuffle_arcs and lat.num_arcs:
        lat = lat.select_arcs(rng.permutation(lat.num_arcs))  # stays grouped by state, new order within
    return lat.renumber_states(rng.permutation(lat.num_states), lat.num_states)
