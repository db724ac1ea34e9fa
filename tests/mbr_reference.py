"""A plain-loop transcription of the MBR recursion (Xu et al. 2011, Figures 4-6, as Kaldi's MinimumBayesRisk),
for checking the vectorised asr_lm_quant.scoring.mbr, and exact expected edit distances by enumerating paths.

Built only from the project's generic lattice algorithms (scale, penalty, prune, top_sort, best_path), one
state and one position at a time, with dictionaries for gamma.
"""

import math

import numpy as np

from asr_lm_quant.kaldi import algorithms as alg

DELTA = 1.0e-5
# Moves within this of each other are ties, taken in Kaldi's order of preference (substitution, insertion,
# deletion); exact ties are common (the 1e-5 insertion cost meets a position that is 1e-5 cheaper), and
# comparing them in floating point would pick a move by rounding noise.
TIE = 1e-9


def prepare(lat, acoustic_scale=1.0, lm_scale=1.0, penalty=0.0, beam=None):
    """1-based nodes in topological order with one final node: (arcs [(start, end, word, loglike)], N, map)."""
    lat = alg.scale(lat, acoustic_scale, lm_scale)
    # lattice-scale writes float32 weights
    lat = lat.replace(graph=lat.graph.astype(np.float32), acoustic=lat.acoustic.astype(np.float32))
    lat = alg.add_word_insertion_penalty(lat, penalty)
    if beam is not None:
        lat = alg.prune(lat, beam)
    lat = alg.top_sort(alg.connect(lat))
    best = alg.best_path(lat)
    n = lat.num_states
    finals = [s for s in range(n) if lat.is_final()[s]]
    arcs = [(int(lat.src[i]) + 1, int(lat.dst[i]) + 1, int(lat.olabel[i]),
             -(float(lat.graph[i]) + float(lat.acoustic[i]))) for i in range(lat.num_arcs)]
    one = (len(finals) == 1 and lat.final_graph[finals[0]] == 0 and lat.final_acoustic[finals[0]] == 0
           and len(lat.final_alignment(finals[0])) == 0 and not np.any(lat.src == finals[0]))
    if one:
        big_n = finals[0] + 1
        assert big_n == n
    else:
        big_n = n + 1
        for s in finals:
            arcs.append((s + 1, big_n, 0, -(float(lat.final_graph[s]) + float(lat.final_acoustic[s]))))
    assert lat.start == 0
    return arcs, big_n, best.words


def _logadd(a, b):
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def acc_stats(arcs, big_n, r):
    """(L, gamma): gamma[q-1] = {word: posterior} for q = 1..Q; r is the normalised hypothesis."""
    big_q = len(r)
    l = lambda a, b: 0.0 if a == b else 1.0  # noqa: E731
    pre = [[] for _ in range(big_n + 1)]
    for i, a in enumerate(arcs):
        pre[a[1]].append(i)
    alpha = [-math.inf] * (big_n + 1)
    alpha[1] = 0.0
    ad = [[0.0] * (big_q + 1) for _ in range(big_n + 1)]
    for q in range(1, big_q + 1):
        ad[1][q] = ad[1][q - 1] + l(0, r[q - 1])
    moves = {}
    for n in range(2, big_n + 1):
        for i in pre[n]:
            alpha[n] = _logadd(alpha[n], alpha[arcs[i][0]] + arcs[i][3])
        for i in pre[n]:
            s, _, w, p = arcs[i]
            x = [0.0] * (big_q + 1)
            x[0] = ad[s][0] + l(w, 0) + DELTA
            b = [0] * (big_q + 1)
            for q in range(1, big_q + 1):
                a1 = ad[s][q - 1] + l(w, r[q - 1])
                a2 = ad[s][q] + l(w, 0) + DELTA
                a3 = x[q - 1] + l(0, r[q - 1])
                if a1 <= a2 + TIE:
                    b[q] = 1 if a1 <= a3 + TIE else 3
                else:
                    b[q] = 2 if a2 <= a3 + TIE else 3
                x[q] = min(a1, a2, a3)
            moves[i] = b
            f = math.exp(alpha[s] + p - alpha[n])
            for q in range(big_q + 1):
                ad[n][q] += f * x[q]
    risk = ad[big_n][big_q]
    bd = [[0.0] * (big_q + 1) for _ in range(big_n + 1)]
    bd[big_n][big_q] = 1.0
    gamma = [dict() for _ in range(big_q + 1)]

    def add(q, w, v):
        if v != 0:
            gamma[q][w] = gamma[q].get(w, 0.0) + v
    for n in range(big_n, 1, -1):
        for i in pre[n]:
            s, _, w, p = arcs[i]
            f = math.exp(alpha[s] + p - alpha[n])
            b = moves[i]
            y = [0.0] * (big_q + 1)
            for q in range(big_q, 0, -1):
                y[q] += f * bd[n][q]
                if b[q] == 1:
                    bd[s][q - 1] += y[q]
                    add(q, w, y[q])
                elif b[q] == 2:
                    bd[s][q] += y[q]
                else:
                    y[q - 1] += y[q]
                    add(q, 0, y[q])
            y[0] += f * bd[n][0]
            bd[s][0] += y[0]
    y = [0.0] * (big_q + 1)
    for q in range(big_q, 0, -1):
        y[q] += bd[1][q]
        y[q - 1] += y[q]
        add(q, 0, y[q])
    return risk, gamma[1:]


def mbr(arcs, big_n, start_words, do_mbr=True):
    """(words, risk, gamma) as Kaldi's MbrDecode."""
    words = [w for w in start_words if w]
    for counter in range(200):
        r = [0]
        for w in words:
            r += [w, 0]
        risk, gamma = acc_stats(arcs, big_n, r)
        if not do_mbr:
            return words, risk, gamma
        changed = 0.0
        new = []
        for q, gq in enumerate(gamma):
            ranked = sorted(gq.items(), key=lambda kv: (-np.float32(kv[1]), -kv[0]))
            top = ranked[0][0] if ranked else 0
            changed += float(np.float32(gq.get(r[q], 0.0))) - float(np.float32(gq.get(top, 0.0)))
            new.append(top)
        words = [w for w in new if w]
        if changed == 0 or counter > 100:
            return words, risk, gamma


def edit_distance(a, b) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(b)]


def paths(lat, acoustic_scale=1.0, lm_scale=1.0, penalty=0.0):
    """Every complete path as (words, posterior)."""
    costs = alg.arc_costs(lat, acoustic_scale, lm_scale, penalty)
    fcosts = alg.final_costs(lat, acoustic_scale, lm_scale)
    offs = lat.arc_offsets()
    out = []

    def walk(s, words, cost):
        if np.isfinite(fcosts[s]):
            out.append((words, cost + fcosts[s]))
        for i in range(offs[s], offs[s + 1]):
            w = int(lat.olabel[i])
            walk(int(lat.dst[i]), words + [w] if w else words, cost + costs[i])
    walk(lat.start, [], 0.0)
    c = np.array([x[1] for x in out])
    p = np.exp(-(c - c.min()))
    p /= p.sum()
    return [(w, float(pi)) for (w, _), pi in zip(out, p)]


def expected_edit_distance(all_paths, hyp) -> float:
    return sum(p * edit_distance(w, hyp) for w, p in all_paths)
