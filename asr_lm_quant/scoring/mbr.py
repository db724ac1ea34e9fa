"""Minimum Bayes risk decoding of word lattices, as Kaldi's ``lattice-mbr-decode`` (``MinimumBayesRisk``).

The method is Xu, Povey, Mangu and Zhu (2011), "Minimum Bayes Risk decoding and system combination based on
a recursion for edit distance". The hypothesis ``R`` is written with an epsilon before, between and after its
words (``0 w1 0 w2 ... 0``: ``Q = 2K + 1`` positions). One *pass* over the lattice (states in topological
order) computes, for every state ``n`` and position ``q``, ``alpha'(n, q)``: an approximation of the expected
edit distance between the word sequences that reach ``n`` and ``R[1..q]``. Per arc the three edit moves
(substitute or match, insert the arc's word, delete ``r_q``) are compared on the *expected* costs, so the
result is an upper bound on the true expected edit distance, exact when every path takes the same alignment
(a linear lattice, say). ``alpha'(final, Q)`` is the Bayes risk. The backward pass follows the chosen moves
back with posterior mass and gives ``gamma(q, w)``: the posterior of word ``w`` (or epsilon) aligned to
position ``q`` -- the sausage (confusion network) statistics. The new hypothesis takes at each position the
word with the highest ``gamma``; this repeats until no position changes its posterior. Inserting into a
deletion position happens through the epsilon positions, which is why they are there.

Kaldi details kept here: the start hypothesis is the best path; a super-final state is added (epsilon arcs
carrying the final weights) unless there is exactly one final state with weight One and no arcs out; a move
that does not advance ``q`` costs an extra ``1e-5`` (so epsilon arcs prefer to advance); ties between moves
go to substitution, then insertion, then deletion; ``gamma`` is rounded to float32 and ties in it go to the
larger word id; at most about 100 iterations.

``score_kaldi_wer.sh --decode-mbr true`` runs ``lattice-scale --inv-acoustic-scale=LMWT |
lattice-add-penalty --word-ins-penalty=WIP | lattice-prune --beam=6 | lattice-mbr-decode``;
:func:`mbr_sweep` does that for many settings of one lattice at once (the topological layers are shared).

Each pass is vectorised over the arcs entering one topological layer and over ``q``: the deletion move is
a chain along ``q`` (``x(q) = min(b(q), x(q-1) + c_q)``), done as a running minimum; in the backward pass
the chain becomes a segmented suffix sum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.bestpath import _layers

log = logging.getLogger(__name__)

DELTA = 1.0e-5  # Kaldi's delta(): the extra cost of a move that does not advance along the hypothesis
MAX_ITERATIONS = 101  # Kaldi stops after its 102nd pass (counter > 100)
KALDI_MBR_BEAM = 6.0  # score_kaldi_wer.sh: lattice-prune --beam=6 before lattice-mbr-decode
# Moves whose expected costs differ by less than this are ties (the running-minimum form of the deletion
# chain adds and subtracts integers, which can move a value by an ulp).
_TIE = 1e-9


@dataclass
class MbrResult:
    """What ``lattice-mbr-decode`` writes for one lattice.

    ``words``: the MBR hypothesis (no epsilons). ``bayes_risk``: Kaldi's ``GetBayesRisk``, the approximate
    expected edit distance of the hypothesis of the last pass. ``sausage``: per position of the normalised
    hypothesis, ``(word, posterior)`` pairs best first (word 0 is epsilon), Kaldi's ``GetSausageStats``.
    ``map_words``: the best path it started from. ``iterations``: passes over the lattice.
    """
    words: list[int]
    bayes_risk: float
    sausage: list[list[tuple[int, float]]] = field(repr=False)
    map_words: list[int]
    iterations: int


class _Graph:
    """The word graph MBR runs on for one setting: pruned arcs, one final node, arcs grouped by the
    topological layer of their destination, and each arc's share of the forward probability of its
    destination, ``exp(alpha(src) + loglike - alpha(dst))``."""

    def __init__(self, src, dst, word, frac, dst_layer, start, final, num_nodes):
        self.src, self.dst, self.word, self.frac = src, dst, word, frac
        self.start, self.final, self.num_nodes = start, final, num_nodes
        order = np.argsort(dst_layer, kind="stable")
        self.groups = [g for g in np.split(order, np.flatnonzero(np.diff(dst_layer[order])) + 1) if len(g)]
        self.vocab = np.unique(np.concatenate([[0], word]))  # sorted; epsilon is index 0
        self.word_index = np.searchsorted(self.vocab, word)


def normalize_eps(words) -> np.ndarray:
    """``w1 .. wK`` (epsilons dropped) -> ``0 w1 0 w2 .. wK 0``, Kaldi's ``NormalizeEps``."""
    w = np.asarray([x for x in words if x != 0], dtype=np.int64)
    out = np.zeros(2 * len(w) + 1, dtype=np.int64)
    out[1::2] = w
    return out


def _forward(g: _Graph, r: np.ndarray):
    """``alpha'`` (Kaldi's ``EditDistance``, the paper's Figure 4), plus each arc's chosen moves for the
    backward pass: ``move[a, q]`` is 1 (substitute/match: from ``q-1``), 2 (insert: from ``q``) or 3
    (delete ``r_q``: from the same arc's ``q-1``)."""
    big_q = len(r)
    r_is_word = (r != 0).astype(np.float64)  # l(0, r_q)
    chain = np.concatenate([[0.0], np.cumsum(r_is_word)])  # [Q+1]
    alpha_dash = np.zeros((g.num_nodes, big_q + 1))
    alpha_dash[g.start] = chain  # from the start, only deletions
    move = np.zeros((len(g.src), big_q + 1), dtype=np.int8)
    for idx in g.groups:
        w = g.word[idx]
        prev = alpha_dash[g.src[idx]]
        a2 = prev + ((w != 0) + DELTA)[:, None]  # insert the arc's word
        a1 = prev[:, :-1] + (w[:, None] != r[None, :])  # align the arc's word with r_q
        best = a2.copy()
        np.minimum(best[:, 1:], a1, out=best[:, 1:])
        # x(q) = min(best(q), x(q-1) + l(0, r_q)) as a running minimum
        x = np.minimum.accumulate(best - chain, axis=1) + chain
        a3 = x[:, :-1] + r_is_word
        a2q = a2[:, 1:]
        m = np.where(a1 <= a2q + _TIE, np.where(a1 <= a3 + _TIE, 1, 3), np.where(a2q <= a3 + _TIE, 2, 3))
        move[idx, 1:] = m
        np.add.at(alpha_dash, g.dst[idx], g.frac[idx][:, None] * x)
    return alpha_dash, move


def _acc_stats(g: _Graph, r: np.ndarray):
    """Bayes risk and ``gamma[q, vocab index]`` for the normalised hypothesis ``r`` (the paper's
    Figure 5; ``gamma`` row ``q - 1`` is position ``q``)."""
    big_q = len(r)
    alpha_dash, move = _forward(g, r)
    risk = float(alpha_dash[g.final, big_q])
    beta_dash = np.zeros((g.num_nodes, big_q + 1))
    beta_dash[g.final, big_q] = 1.0
    arc_beta = np.zeros((len(g.src), big_q + 1))
    cols = np.arange(big_q + 1)
    for idx in reversed(g.groups):
        v = g.frac[idx][:, None] * beta_dash[g.dst[idx]]
        # arc_beta(q) = v(q) + [move(q+1) == 3] arc_beta(q+1): a suffix sum that restarts wherever the
        # move at q+1 is not a deletion.
        links = np.zeros((len(idx), big_q + 1), dtype=bool)
        links[:, :-1] = move[idx, 1:] == 3
        suffix = np.zeros((len(idx), big_q + 2))
        suffix[:, :-1] = np.cumsum(v[:, ::-1], axis=1)[:, ::-1]
        end = np.where(links, big_q + 1, cols)  # the chain from q ends at the first q' >= q without a link
        end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
        ab = suffix[:, :-1] - np.take_along_axis(suffix, end + 1, axis=1)
        arc_beta[idx] = ab
        # Mass flows to the source: substitution to q-1, insertion to q, deletion stays on the arc.
        mv = move[idx, 1:]
        target = cols[1:] - (mv == 1)
        rows = np.broadcast_to(g.src[idx][:, None], mv.shape)
        keep = mv != 3
        np.add.at(beta_dash, (rows[keep], target[keep]), ab[:, 1:][keep])
        np.add.at(beta_dash[:, 0], g.src[idx], ab[:, 0])
    nv = len(g.vocab)
    gamma = np.zeros((big_q + 1) * nv)
    mv = move[:, 1:]
    q_of = np.broadcast_to(cols[1:], mv.shape)
    sub = mv == 1
    gamma += np.bincount((q_of * nv + g.word_index[:, None])[sub], weights=arc_beta[:, 1:][sub],
                         minlength=len(gamma))
    dele = mv == 3
    gamma += np.bincount((q_of * nv)[dele], weights=arc_beta[:, 1:][dele], minlength=len(gamma))
    gamma = gamma.reshape(big_q + 1, nv)
    # Positions still open at the start state are deletions of r_q (epsilon aligned to them).
    gamma[1:, 0] += np.cumsum(beta_dash[g.start, 1:][::-1])[::-1]
    return risk, gamma[1:]


def _sausage(vocab, gamma32) -> list[list[tuple[int, float]]]:
    out = []
    for row in gamma32:
        nz = np.flatnonzero(row)
        order = sorted(nz, key=lambda i: (-row[i], -vocab[i]))
        out.append([(int(vocab[i]), float(row[i])) for i in order])
    return out


def _decode(g: _Graph, start_words, do_mbr: bool = True) -> MbrResult:
    """Kaldi's ``MbrDecode`` (the paper's Figure 6) from ``start_words``."""
    vocab = g.vocab
    words = list(start_words)
    risk, gamma32, r = 0.0, None, None
    iterations = 0
    while True:
        r = normalize_eps(words)
        prev_risk = risk
        risk, gamma = _acc_stats(g, r)
        iterations += 1
        if iterations > 1 and risk > prev_risk + 1e-6:
            log.debug("MBR: edit distance increased from %g to %g", prev_risk, risk)
        gamma32 = gamma.astype(np.float32)  # Kaldi keeps gamma as float
        if not do_mbr:
            break
        nv = len(vocab)
        # Highest gamma, ties to the larger word id; a position with no mass keeps epsilon.
        best = nv - 1 - np.argmax(gamma32[:, ::-1], axis=1)
        best[gamma32.max(axis=1) <= 0] = 0
        pos = np.arange(len(r))
        at = np.minimum(np.searchsorted(vocab, r), nv - 1)
        old = np.where(vocab[at] == r, gamma32[pos, at], 0.0)  # a given word the lattice lacks has none
        new = gamma32[pos, best]
        r = vocab[best]
        words = [int(w) for w in r if w != 0]
        if np.all(old == new):  # Kaldi's delta_Q == 0
            break
        if iterations > MAX_ITERATIONS:
            log.warning("MBR decoding iterated %d times without settling; stopping", iterations)
            break
    return MbrResult(words=[int(w) for w in r if w != 0], bayes_risk=risk, sausage=_sausage(vocab, gamma32),
                     map_words=[int(w) for w in start_words if w != 0], iterations=iterations)


class _PreparedLattice:
    """What a sweep shares between settings: the lattice's topological layers and arc groupings."""

    def __init__(self, lat, *, path=None, key=None):
        if not lat.compact:
            from asr_lm_quant.kaldi.lattice import lattice_to_compact
            lat = lattice_to_compact(lat)
        self.lat = lat
        self.path, self.key = path, key
        ns = lat.num_states
        layers = _layers(lat, path=path, key=key)
        self.layer_of = np.empty(ns, dtype=np.int64)
        for i, states in enumerate(layers):
            self.layer_of[states] = i
        self.num_layers = len(layers)
        self.arc_offsets = lat.arc_offsets()
        self.is_final = lat.is_final()
        # Kaldi's One() final weight: no cost and no transition-ids.
        self.final_is_one = (self.is_final & (lat.final_graph == 0) & (lat.final_acoustic == 0)
                             & (lat.final_ali_lengths() == 0))
        dl, sl = self.layer_of[lat.dst], self.layer_of[lat.src]
        self.by_dst = np.argsort(dl, kind="stable")
        self.dst_bounds = np.searchsorted(dl[self.by_dst], np.arange(self.num_layers + 1))
        self.by_src = np.argsort(sl, kind="stable")
        self.src_bounds = np.searchsorted(sl[self.by_src], np.arange(self.num_layers + 1))

    def costs(self, graph_scale, acoustic_scale, penalty):
        """Arc and final costs after lattice-scale and lattice-add-penalty (float32 weights, as Kaldi's)."""
        lat = self.lat
        cost = (lat.graph * graph_scale).astype(np.float32).astype(np.float64)
        cost = cost + (lat.acoustic * acoustic_scale).astype(np.float32)
        cost = cost + penalty * (lat.olabel != 0)
        with np.errstate(invalid="ignore"):
            fcost = lat.final_graph * graph_scale + lat.final_acoustic * acoustic_scale
        fcost[~self.is_final | np.isnan(fcost)] = np.inf
        return cost, fcost

    def _tropical(self, cost, fcost):
        lat = self.lat
        fwd = np.full(lat.num_states, np.inf)
        fwd[lat.start] = 0.0
        for i in range(1, self.num_layers):
            idx = self.by_dst[self.dst_bounds[i]:self.dst_bounds[i + 1]]
            np.minimum.at(fwd, lat.dst[idx], fwd[lat.src[idx]] + cost[idx])
        bwd = fcost.copy()
        for i in range(self.num_layers - 1, -1, -1):
            idx = self.by_src[self.src_bounds[i]:self.src_bounds[i + 1]]
            np.minimum.at(bwd, lat.src[idx], cost[idx] + bwd[lat.dst[idx]])
        return fwd, bwd

    def _best_words(self, cost, fcost, bwd):
        """Words of the cheapest path (Kaldi's ShortestPath; the first arc wins a tie)."""
        lat = self.lat
        s, words = lat.start, []
        for _ in range(lat.num_states):
            lo, hi = self.arc_offsets[s], self.arc_offsets[s + 1]
            if hi > lo:
                tot = cost[lo:hi] + bwd[lat.dst[lo:hi]]
                k = int(np.argmin(tot))
                if tot[k] < fcost[s]:
                    if lat.olabel[lo + k]:
                        words.append(int(lat.olabel[lo + k]))
                    s = int(lat.dst[lo + k])
                    continue
            break
        return words

    def graph(self, graph_scale=1.0, acoustic_scale=1.0, penalty=0.0, beam=KALDI_MBR_BEAM):
        """``(graph, MAP words)`` for one setting, or ``None`` if no final state is reachable."""
        lat = self.lat
        if lat.start < 0 or lat.num_states == 0:
            return None
        cost, fcost = self.costs(graph_scale, acoustic_scale, penalty)
        fwd, bwd = self._tropical(cost, fcost)
        best = bwd[lat.start]
        if not np.isfinite(best):
            return None
        map_words = self._best_words(cost, fcost, bwd)
        if beam is None or not np.isfinite(beam):
            limit = np.inf
        else:  # lattice-prune; a little slack so the best path survives beam 0
            limit = best + beam + 1e-9 * max(1.0, abs(best))
        with np.errstate(invalid="ignore"):
            keep = fwd[lat.src] + cost + bwd[lat.dst] <= limit
            keep_final = (fwd + fcost <= limit) & np.isfinite(fcost)
        arcs = np.flatnonzero(keep)
        finals = np.flatnonzero(keep_final)
        src, dst = lat.src[arcs].astype(np.int64), lat.dst[arcs].astype(np.int64)
        word, c = lat.olabel[arcs].astype(np.int64), cost[arcs]
        dst_layer = self.layer_of[dst]
        num_nodes = lat.num_states
        if len(finals) == 1 and self.final_is_one[finals[0]] and not np.any(src == finals[0]):
            final = int(finals[0])
        else:  # CreateSuperFinal: epsilon arcs carrying the final weights into one new state
            final = num_nodes
            num_nodes += 1
            src = np.concatenate([src, finals])
            dst = np.concatenate([dst, np.full(len(finals), final)])
            word = np.concatenate([word, np.zeros(len(finals), np.int64)])
            c = np.concatenate([c, fcost[finals]])
            dst_layer = np.concatenate([dst_layer, np.full(len(finals), self.num_layers)])
        # Log-semiring forward probabilities, layer by layer.
        alpha = np.full(num_nodes, -np.inf)
        alpha[lat.start] = 0.0
        order = np.argsort(dst_layer, kind="stable")
        for grp in np.split(order, np.flatnonzero(np.diff(dst_layer[order])) + 1):
            if not len(grp):
                continue
            x = alpha[src[grp]] - c[grp]
            d = dst[grp]
            top = np.full(num_nodes, -np.inf)
            np.maximum.at(top, d, x)
            tot = np.zeros(num_nodes)
            np.add.at(tot, d, np.exp(x - top[d]))
            nodes = np.unique(d)
            alpha[nodes] = top[nodes] + np.log(tot[nodes])
        with np.errstate(invalid="ignore", over="ignore"):
            frac = np.exp(alpha[src] - c - alpha[dst])
        frac = np.nan_to_num(frac)
        return _Graph(src, dst, word, frac, dst_layer, lat.start, final, num_nodes), map_words


def _check_words(words, path, key):
    if any(int(w) < 0 for w in words):
        raise InputError(path, "hypothesis word ids must be non-negative", key=key)


def mbr_decode(lat, acoustic_scale: float = 1.0, lm_scale: float = 1.0, word_ins_penalty: float = 0.0, *,
               beam: float | None = None, hypothesis=None, do_mbr: bool = True, path=None,
               key=None) -> MbrResult | None:
    """MBR decoding of one lattice (``lattice-mbr-decode`` on the lattice scaled so: ``lm_scale`` x graph
    cost + ``acoustic_scale`` x acoustic cost + ``word_ins_penalty`` per word arc).

    ``beam``: prune first (``lattice-prune``; ``None`` keeps every arc). ``hypothesis``: start from these
    word ids instead of the best path; with ``do_mbr=False`` the hypothesis is kept and only its statistics
    (Bayes risk, sausage) are computed, as Kaldi's ``MinimumBayesRisk(clat, words, false)``. ``None`` when no
    final state is reachable.
    """
    prep = _PreparedLattice(lat, path=path, key=key)
    got = prep.graph(lm_scale, acoustic_scale, word_ins_penalty, beam)
    if got is None:
        return None
    g, map_words = got
    start = map_words if hypothesis is None else [int(w) for w in hypothesis]
    _check_words(start, path, key)
    return _decode(g, start, do_mbr)


def mbr_sweep(lat, graph_scale, acoustic_scale, penalty, *, beam: float | None = KALDI_MBR_BEAM, path=None,
              key=None) -> list[MbrResult | None]:
    """:func:`mbr_decode` for each setting ``k`` = ``(graph_scale[k], acoustic_scale[k], penalty[k])``
    after ``lattice-prune --beam`` (Kaldi's scoring pipeline); ``None`` where no final state is reachable."""
    prep = _PreparedLattice(lat, path=path, key=key)
    out = []
    for gs, ac, wp in zip(graph_scale, acoustic_scale, penalty):
        got = prep.graph(float(gs), float(ac), float(wp), beam)
        out.append(None if got is None else _decode(got[0], got[1]))
    return out
