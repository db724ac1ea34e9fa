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
go to substitution, then insertion, then deletion (moves within 1e-9 are ties: exact ties are common, as where
the 1e-5 meets a position that is 1e-5 cheaper, and Kaldi settles them by rounding noise); ``gamma`` is
rounded to float32 and ties in it go to the larger word id; at most about 100 iterations.

``score_kaldi_wer.sh --decode-mbr true`` runs ``lattice-scale --inv-acoustic-scale=LMWT |
lattice-add-penalty --word-ins-penalty=WIP | lattice-prune --beam=6 | lattice-mbr-decode``;
:func:`mbr_sweep` does that for many settings of one lattice at once (the topological layers are shared).

Each pass is vectorised over the arcs entering one topological layer, over ``q`` and over the settings of
a sweep (an arc pruned away in one setting carries no probability there; hypotheses of different lengths
are padded, which is harmless as nothing flows from a position to a lower one in the forward pass or to a
higher one in the backward pass). The deletion move is a chain along ``q`` (``x(q) = min(b(q), x(q-1) +
c_q)``), done as a running minimum; in the backward pass it becomes a segmented suffix sum.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.bestpath import topological_layers

log = logging.getLogger(__name__)

DELTA = 1.0e-5  # Kaldi's delta(): the extra cost of a move that does not advance along the hypothesis
MAX_ITERATIONS = 101  # Kaldi stops after its 102nd pass (counter > 100)
KALDI_MBR_BEAM = 6.0  # score_kaldi_wer.sh: lattice-prune --beam=6 before lattice-mbr-decode
_TIE = 1e-9  # expected costs closer than this are ties
_CHUNK = 4_000_000  # most (arcs x settings x positions) values held per array; settings go in chunks


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


def normalize_eps(words) -> np.ndarray:
    """``w1 .. wK`` (epsilons dropped) -> ``0 w1 0 w2 .. wK 0``, Kaldi's ``NormalizeEps``."""
    w = np.asarray([x for x in words if x != 0], dtype=np.int64)
    out = np.zeros(2 * len(w) + 1, dtype=np.int64)
    out[1::2] = w
    return out


class _Graphs:
    """The word graphs MBR runs on, one per setting ``k``, over shared nodes: the lattice's states plus a
    super-final node. ``frac[a, k]`` is arc ``a``'s share of the forward probability of its destination,
    ``exp(alpha(src) + loglike - alpha(dst))``, 0 where setting ``k`` pruned the arc; ``final[k]`` is the
    node the paths of setting ``k`` end in. ``groups``: arc indices by the topological layer of their
    destination."""

    def __init__(self, src, dst, word, frac, groups, start, final, num_nodes):
        self.src, self.dst, self.word, self.frac = src, dst, word, frac
        self.groups, self.start, self.final, self.num_nodes = groups, start, final, num_nodes
        self.vocab = np.unique(np.concatenate([[0], word]))  # sorted; epsilon is index 0
        self.word_index = np.searchsorted(self.vocab, word)

    def subset(self, ks) -> "_Graphs":
        return _Graphs(self.src, self.dst, self.word, self.frac[:, ks], self.groups, self.start, self.final[ks],
                       self.num_nodes)


def _forward(g: _Graphs, r: np.ndarray, chain: np.ndarray):
    """``alpha'[node, k, q]`` (Kaldi's ``EditDistance``, the paper's Figure 4) and each arc's moves for the
    backward pass: ``move[a, k, q]`` is 1 (substitute/match: from ``q-1``), 2 (insert: from ``q``) or 3
    (delete ``r_q``: from the same arc's ``q-1``). ``r[k]``: padded hypotheses; ``chain[k, q]``: the number
    of words in ``r[k, :q]``."""
    r_is_word = np.diff(chain, axis=1)
    kk, q1 = chain.shape
    alpha_dash = np.zeros((g.num_nodes, kk, q1))
    alpha_dash[g.start] = chain  # from the start, only deletions
    move = np.zeros((len(g.src), kk, q1), dtype=np.int8)
    for idx in g.groups:
        w = g.word[idx][:, None, None]
        prev = alpha_dash[g.src[idx]]
        a2 = prev + ((w != 0) + DELTA)  # insert the arc's word
        a1 = prev[:, :, :-1] + (w != r[None])  # align the arc's word with r_q
        best = a2.copy()
        np.minimum(best[:, :, 1:], a1, out=best[:, :, 1:])
        # x(q) = min(best(q), x(q-1) + l(0, r_q)) as a running minimum
        x = np.minimum.accumulate(best - chain, axis=2) + chain
        a3 = x[:, :, :-1] + r_is_word
        a2q = a2[:, :, 1:]
        move[idx, :, 1:] = np.where(a1 <= a2q + _TIE, np.where(a1 <= a3 + _TIE, 1, 3),
                                    np.where(a2q <= a3 + _TIE, 2, 3))
        np.add.at(alpha_dash, g.dst[idx], g.frac[idx][:, :, None] * x)
    return alpha_dash, move


def _acc_stats(g: _Graphs, hyps: list[np.ndarray]):
    """Bayes risk ``[K]`` and ``gamma[k, q - 1, vocab index]`` for the normalised hypotheses ``hyps[k]``
    (the paper's Figure 5)."""
    kk = len(hyps)
    lens = np.array([len(h) for h in hyps])
    q1 = int(lens.max()) + 1
    r = np.zeros((kk, q1 - 1), dtype=np.int64)
    for k, h in enumerate(hyps):
        r[k, :len(h)] = h
    chain = np.zeros((kk, q1))
    chain[:, 1:] = np.cumsum(r != 0, axis=1)
    alpha_dash, move = _forward(g, r, chain)
    ks = np.arange(kk)
    risk = alpha_dash[g.final, ks, lens]
    beta_dash = np.zeros_like(alpha_dash)
    beta_dash[g.final, ks, lens] = 1.0
    arc_beta = np.zeros(move.shape)
    cols = np.arange(q1)
    for idx in reversed(g.groups):
        m = len(idx)
        v = g.frac[idx][:, :, None] * beta_dash[g.dst[idx]]
        # arc_beta(q) = v(q) + [move(q+1) == 3] arc_beta(q+1): a suffix sum that restarts wherever the
        # move at q+1 is not a deletion.
        links = np.zeros(v.shape, dtype=bool)
        links[:, :, :-1] = move[idx, :, 1:] == 3
        suffix = np.zeros((m, kk, q1 + 1))
        suffix[:, :, :-1] = np.cumsum(v[:, :, ::-1], axis=2)[:, :, ::-1]
        end = np.where(links, q1, cols)  # the chain from q ends at the first q' >= q without a link
        end = np.minimum.accumulate(end[:, :, ::-1], axis=2)[:, :, ::-1]
        ab = suffix[:, :, :-1] - np.take_along_axis(suffix, end + 1, axis=2)
        arc_beta[idx] = ab
        # Mass flows to the source: substitution to q-1, insertion to q, deletion stays on the arc.
        mv = move[idx, :, 1:]
        keep = mv != 3
        node = np.broadcast_to(g.src[idx][:, None, None], mv.shape)[keep]
        setting = np.broadcast_to(ks[None, :, None], mv.shape)[keep]
        target = (cols[1:] - (mv == 1))[keep]
        np.add.at(beta_dash, (node, setting, target), ab[:, :, 1:][keep])
        np.add.at(beta_dash[:, :, 0], g.src[idx], ab[:, :, 0])
    nv = len(g.vocab)
    size = kk * q1 * nv
    mv = move[:, :, 1:]
    base = (ks[None, :, None] * q1 + cols[None, None, 1:]) * nv
    sub, dele = mv == 1, mv == 3
    flat = np.zeros(size)
    flat += np.bincount((base + g.word_index[:, None, None])[sub], weights=arc_beta[:, :, 1:][sub], minlength=size)
    flat += np.bincount(np.broadcast_to(base, mv.shape)[dele], weights=arc_beta[:, :, 1:][dele], minlength=size)
    gamma = flat.reshape(kk, q1, nv)
    # Positions still open at the start state are deletions of r_q (epsilon aligned to them).
    gamma[:, 1:, 0] += np.cumsum(beta_dash[g.start, :, 1:][:, ::-1], axis=1)[:, ::-1]
    return risk, [gamma[k, 1:lens[k] + 1] for k in range(kk)]


def _sausage(vocab, gamma32) -> list[list[tuple[int, float]]]:
    out = []
    for row in gamma32:
        nz = np.flatnonzero(row)
        order = sorted(nz, key=lambda i: (-row[i], -vocab[i]))
        out.append([(int(vocab[i]), float(row[i])) for i in order])
    return out


def _update(vocab, r, gamma32):
    """Kaldi's update of ``R``: the highest ``gamma`` at each position (ties to the larger word id; a
    position with no mass keeps epsilon). Returns the new words and whether anything changed
    (``delta_Q != 0``)."""
    nv = len(vocab)
    best = nv - 1 - np.argmax(gamma32[:, ::-1], axis=1)
    best[gamma32.max(axis=1) <= 0] = 0
    pos = np.arange(len(r))
    at = np.minimum(np.searchsorted(vocab, r), nv - 1)
    old = np.where(vocab[at] == r, gamma32[pos, at], 0.0)  # a given word the lattice lacks has none
    new = gamma32[pos, best]
    return [int(w) for w in vocab[best] if w != 0], bool(np.any(old != new))


def _decode(g: _Graphs, start_words: list[list[int]], do_mbr: bool = True) -> list[MbrResult]:
    """Kaldi's ``MbrDecode`` (the paper's Figure 6) for every setting of ``g``, from ``start_words[k]``."""
    kk = len(start_words)
    words = [[w for w in ws if w != 0] for ws in start_words]
    hyps = [normalize_eps(ws) for ws in words]
    risk = np.zeros(kk)
    gammas: list = [None] * kk
    iterations = np.zeros(kk, dtype=np.int64)
    active = list(range(kk))
    while active:
        still = []
        per = max(1, _CHUNK // max(1, len(g.src) * (2 + max(len(hyps[k]) for k in active))))
        for lo in range(0, len(active), per):
            ks = active[lo:lo + per]
            rk, gk = _acc_stats(g.subset(ks), [hyps[k] for k in ks])
            for j, k in enumerate(ks):
                iterations[k] += 1
                if iterations[k] > 1 and rk[j] > risk[k] + 1e-6:
                    log.debug("MBR: edit distance increased from %g to %g", risk[k], rk[j])
                risk[k] = rk[j]
                gammas[k] = gk[j].astype(np.float32)  # Kaldi keeps gamma as float
                if not do_mbr:
                    continue
                new_words, changed = _update(g.vocab, hyps[k], gammas[k])
                words[k] = new_words
                if changed and iterations[k] > MAX_ITERATIONS:
                    log.warning("MBR decoding iterated %d times without settling; stopping", iterations[k])
                elif changed:
                    hyps[k] = normalize_eps(new_words)
                    still.append(k)
        active = still
    return [MbrResult(words=words[k], bayes_risk=float(risk[k]), sausage=_sausage(g.vocab, gammas[k]),
                      map_words=[int(w) for w in start_words[k] if w != 0], iterations=int(iterations[k]))
            for k in range(kk)]


class _PreparedLattice:
    """A lattice ready for MBR at any settings: its topological layers and arc groupings."""

    def __init__(self, lat, *, path=None, key=None):
        if not lat.compact:
            from asr_lm_quant.kaldi.algorithms import lattice_to_compact
            lat = lattice_to_compact(lat)
        self.lat = lat
        self.path, self.key = path, key
        ns = lat.num_states
        layers = topological_layers(lat, path=path, key=key) if ns else []
        self.layer_of = np.empty(ns, dtype=np.int64)
        for i, states in enumerate(layers):
            self.layer_of[states] = i
        self.num_layers = len(layers)
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
        """Arc ``[A, K]`` and final ``[S, K]`` costs after lattice-scale and lattice-add-penalty (float32
        scaled weights, as Kaldi's files hold them)."""
        lat = self.lat
        gs, ac, wp = (np.asarray(x, dtype=np.float64) for x in (graph_scale, acoustic_scale, penalty))
        cost = (lat.graph[:, None] * gs).astype(np.float32).astype(np.float64)
        cost += (lat.acoustic[:, None] * ac).astype(np.float32)
        cost += (lat.olabel != 0)[:, None] * wp
        with np.errstate(invalid="ignore"):
            fcost = lat.final_graph[:, None] * gs + lat.final_acoustic[:, None] * ac
        fcost[~self.is_final | np.isnan(fcost).any(axis=1)] = np.inf
        return cost, fcost

    def _tropical(self, cost, fcost):
        lat = self.lat
        fwd = np.full(fcost.shape, np.inf)
        fwd[lat.start] = 0.0
        for i in range(1, self.num_layers):
            idx = self.by_dst[self.dst_bounds[i]:self.dst_bounds[i + 1]]
            np.minimum.at(fwd, lat.dst[idx], fwd[lat.src[idx]] + cost[idx])
        bwd = fcost.copy()
        for i in range(self.num_layers - 1, -1, -1):
            idx = self.by_src[self.src_bounds[i]:self.src_bounds[i + 1]]
            np.minimum.at(bwd, lat.src[idx], cost[idx] + bwd[lat.dst[idx]])
        return fwd, bwd

    def graphs(self, graph_scale, acoustic_scale, penalty, beam=KALDI_MBR_BEAM):
        """``(graphs, MAP words per setting, ok[K])`` for the settings; ``ok[k]`` is False where no final
        state is reachable (that setting's graph is empty)."""
        lat = self.lat
        gs, ac, wp = (np.atleast_1d(np.asarray(x, dtype=np.float64)) for x in (graph_scale, acoustic_scale,
                                                                                penalty))
        kk = len(gs)
        if lat.start < 0 or lat.num_states == 0:
            return None, [None] * kk, np.zeros(kk, bool)
        cost, fcost = self.costs(gs, ac, wp)
        fwd, bwd = self._tropical(cost, fcost)
        best = bwd[lat.start]
        ok = np.isfinite(best)
        from asr_lm_quant.scoring.bestpath import best_paths
        map_words = [None if p is None else p.words
                     for p in best_paths(lat, gs, ac, wp, path=self.path, key=self.key)]
        if beam is None or not np.isfinite(beam):
            limit = np.full(kk, np.inf)
        else:  # lattice-prune; a little slack so the best path survives beam 0
            limit = best + beam + 1e-9 * np.maximum(1.0, np.abs(best))
        with np.errstate(invalid="ignore"):
            keep = (fwd[lat.src] + cost + bwd[lat.dst] <= limit) & ok
            keep_final = (fwd + fcost <= limit) & np.isfinite(fcost) & ok
        ns = lat.num_states
        # CreateSuperFinal: epsilon arcs carrying the final weights into one new node, unless the setting has
        # one final state, of weight One, with no arcs out.
        own = np.zeros(kk, dtype=bool)
        final = np.full(kk, ns, dtype=np.int64)
        has_out = np.zeros((ns, kk), dtype=bool)
        np.logical_or.at(has_out, lat.src, keep)
        for k in np.flatnonzero(keep_final.sum(axis=0) == 1):
            s = int(np.flatnonzero(keep_final[:, k])[0])
            if self.final_is_one[s] and not has_out[s, k]:
                own[k], final[k] = True, s
        fin = np.flatnonzero(keep_final.any(axis=1))
        src = np.concatenate([lat.src, fin]).astype(np.int64)
        dst = np.concatenate([lat.dst, np.full(len(fin), ns)]).astype(np.int64)
        word = np.concatenate([lat.olabel, np.zeros(len(fin), np.int64)]).astype(np.int64)
        c = np.concatenate([cost, fcost[fin]])
        keep = np.concatenate([keep, keep_final[fin] & ~own], axis=0)
        dst_layer = np.concatenate([self.layer_of[lat.dst], np.full(len(fin), self.num_layers)])
        order = np.argsort(dst_layer, kind="stable")
        groups = [grp for grp in np.split(order, np.flatnonzero(np.diff(dst_layer[order])) + 1)
                  if len(grp) and keep[grp].any()]
        # Log-semiring forward probabilities of the pruned graphs, layer by layer.
        num_nodes = ns + 1
        alpha = np.full((num_nodes, kk), -np.inf)
        alpha[lat.start] = 0.0
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            for grp in groups:
                x = np.where(keep[grp], alpha[src[grp]] - c[grp], -np.inf)
                d = dst[grp]
                top = np.full((num_nodes, kk), -np.inf)
                np.maximum.at(top, d, x)
                tot = np.zeros((num_nodes, kk))
                np.add.at(tot, d, np.nan_to_num(np.exp(x - top[d])))
                nodes = np.unique(d)
                alpha[nodes] = top[nodes] + np.log(tot[nodes])
            frac = np.where(keep, np.exp(alpha[src] - c - alpha[dst]), 0.0)
        frac = np.nan_to_num(frac)
        return _Graphs(src, dst, word, frac, groups, lat.start, final, num_nodes), map_words, ok


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
    g, map_words, ok = prep.graphs(lm_scale, acoustic_scale, word_ins_penalty, beam)
    if not ok[0]:
        return None
    start = map_words[0] if hypothesis is None else [int(w) for w in hypothesis]
    if any(w < 0 for w in start):
        raise InputError(path, "hypothesis word ids must be non-negative", key=key)
    return _decode(g, [start], do_mbr)[0]


def mbr_sweep(lat, graph_scale, acoustic_scale, penalty, *, beam: float | None = KALDI_MBR_BEAM, path=None,
              key=None) -> list[MbrResult | None]:
    """:func:`mbr_decode` for each setting ``k`` = ``(graph_scale[k], acoustic_scale[k], penalty[k])``
    after ``lattice-prune --beam`` (Kaldi's scoring pipeline), all settings in one batch; ``None`` where no
    final state is reachable."""
    prep = _PreparedLattice(lat, path=path, key=key)
    g, map_words, ok = prep.graphs(graph_scale, acoustic_scale, penalty, beam)
    out: list[MbrResult | None] = [None] * len(ok)
    ks = np.flatnonzero(ok)
    if len(ks):
        for k, res in zip(ks, _decode(g.subset(ks), [map_words[k] for k in ks])):
            out[k] = res
    return out
