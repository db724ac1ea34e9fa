"""Lattice rescoring that keeps a lattice: the path-cover estimate of Kaldi's pytorchnn recipe.

A Transformer LM conditions on the whole history, so exact arc scores would need one lattice state per
history. The estimate (Li et al., "A parallel approach to lattice rescoring", ICASSP 2021) gives each arc
the NN score it has on one good path through it:

1. **Prune** (``lattice-prune``): keep arcs on a path within ``beam`` of the best, costs
   ``graph + acoustic_scale * acoustic``.
2. **Expand**: in topological order, an incoming arc whose posterior exceeds ``epsilon`` gets a copy of its
   destination state (with copies of all arcs leaving it) of its own; the other incoming arcs share one
   copy. Likely arcs thus get a unique history, which makes their estimate exact. (Posteriors of copied
   arcs are the original ones split in proportion to the mass entering each copy. A state has at most
   one incoming arc over 0.5, so with the default ``epsilon`` the lattice at most doubles.)
3. **Cover**: for every arc (and every final weight) take the best path through it (Viterbi prefix +
   arc + Viterbi suffix). The distinct such paths cover the lattice and each is the best path of some arc.
4. **Score** the covering paths with the NN LM (per-word costs, end of sentence last) and with the old
   n-gram LM (per-word costs from its ARPA, G.fst or G.carpa, ``</s>`` last), all utterances batched
   together.
5. **Assign**: rank the paths by cost; each arc takes the word costs at its position in the best-ranked
   path that contains it; each final weight takes the end-of-sentence costs of the best-ranked path ending
   there. Then ``graph += w * nn - w * ngram`` per arc and per final weight.

The old LM is removed with the same path estimate rather than by composing with the n-gram (Kaldi runs
``lattice-lmrescore-const-arpa --lm-scale=-w``); the two agree wherever an arc's n-gram history is unique,
in particular on every arc that got a unique history in step 2. On a lattice with one path both are exact
and the result equals N-best rescoring of that path (``graph - o + w*nn + (1-w)*o``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import arc_costs, arc_posteriors, final_costs, prune, topological_order
from asr_lm_quant.kaldi.archive import LatticeWriter, read_lattices
from asr_lm_quant.kaldi.lattice import INF, Lattice, offsets_from_lengths

log = logging.getLogger(__name__)


# --- expansion ----------------------------------------------------------------------------------------------
def expand_unique_histories(lat: Lattice, epsilon: float = 0.5, acoustic_scale: float = 0.1) -> Lattice:
    """Step 2 above on a CompactLattice (topologically sortable); returns a new CompactLattice."""
    if lat.start < 0 or lat.num_arcs == 0:
        return lat
    post, _, total = arc_posteriors(lat, acoustic_scale)
    if not np.isfinite(total):
        return lat
    order = topological_order(lat)
    offs = lat.arc_offsets()
    incoming: dict[int, list] = {int(lat.start): [(-1, -1, 1.0)]}  # orig state -> [(new src, orig arc, post)]
    new_arcs: list = []  # (new src, new dst, orig arc)
    copies: list = []    # new state -> orig state
    start = -1
    for s in order:
        s = int(s)
        ins = incoming.pop(s, [])
        if not ins:
            continue
        mass_total = sum(p for _, _, p in ins) or 1.0
        groups = [[x] for x in ins if x[2] > epsilon and x[1] >= 0]
        rest = [x for x in ins if not (x[2] > epsilon and x[1] >= 0)]
        if rest:
            groups.append(rest)
        for g in groups:
            ns = len(copies)
            copies.append(s)
            if s == lat.start and any(x[1] < 0 for x in g):
                start = ns
            for src, a, _ in g:
                if a >= 0:
                    new_arcs.append((src, ns, a))
            share = sum(p for _, _, p in g) / mass_total
            for a in range(offs[s], offs[s + 1]):
                incoming.setdefault(int(lat.dst[a]), []).append((ns, a, float(post[a]) * share))
    copies_a = np.array(copies, dtype=np.int64)
    src = np.array([x[0] for x in new_arcs], dtype=np.int64)
    dst = np.array([x[1] for x in new_arcs], dtype=np.int64)
    orig = np.array([x[2] for x in new_arcs], dtype=np.int64)
    by_src = np.argsort(src, kind="stable")
    src, dst, orig = src[by_src], dst[by_src], orig[by_src]
    # Copy labels, costs and alignments of the original arcs under their new states in one step.
    base = lat.select_arcs(orig, src=src, dst=dst)
    flen = lat.final_ali_lengths()[copies_a]
    fstart = lat.final_ali_offsets[:-1][copies_a]
    fidx = np.repeat(fstart - offsets_from_lengths(flen)[:-1], flen) + np.arange(flen.sum(), dtype=np.int64)
    return base.replace(start=start, final_graph=lat.final_graph[copies_a],
                        final_acoustic=lat.final_acoustic[copies_a], final_ali_offsets=offsets_from_lengths(flen),
                        final_ali=lat.final_ali[fidx])


# --- path cover ---------------------------------------------------------------------------------------------
@dataclass
class PathCover:
    """Covering paths of one lattice, best first: each a list of arc indices ending in ``final[i]``."""
    arcs: list
    final: list
    cost: list
    words: list  # word ids per path


def path_cover(lat: Lattice, acoustic_scale: float = 0.1) -> PathCover:
    """Step 3: the distinct best paths through each arc and each final weight, sorted by cost."""
    if lat.start < 0:
        return PathCover([], [], [], [])
    c = arc_costs(lat, acoustic_scale)
    fc = final_costs(lat, acoustic_scale)
    order = topological_order(lat)
    n = lat.num_states
    alpha = np.full(n, INF)
    back = np.full(n, -1, np.int64)
    alpha[lat.start] = 0.0
    offs = lat.arc_offsets()
    for s in order:
        if not np.isfinite(alpha[s]):
            continue
        for a in range(offs[s], offs[s + 1]):
            d = lat.dst[a]
            v = alpha[s] + c[a]
            if v < alpha[d]:
                alpha[d], back[d] = v, a
    beta = fc.copy()
    fwd = np.full(n, -1, np.int64)  # -1: stop (final weight)
    for s in order[::-1]:
        for a in range(offs[s], offs[s + 1]):
            v = c[a] + beta[lat.dst[a]]
            if v < beta[s]:
                beta[s], fwd[s] = v, a

    def prefix(s):
        out = []
        while back[s] >= 0 and s != lat.start:
            out.append(int(back[s]))
            s = int(lat.src[back[s]])
        return out[::-1]

    def suffix(s):
        out = []
        while fwd[s] >= 0:
            out.append(int(fwd[s]))
            s = int(lat.dst[fwd[s]])
        return out, s

    found: dict = {}
    for a in range(lat.num_arcs):
        cost = alpha[lat.src[a]] + c[a] + beta[lat.dst[a]]
        if not np.isfinite(cost):
            continue
        suf, end = suffix(int(lat.dst[a]))
        found.setdefault((tuple(prefix(int(lat.src[a])) + [a] + suf), end), cost)
    for s in np.flatnonzero(np.isfinite(fc)):
        cost = alpha[s] + fc[s]
        if np.isfinite(cost):
            found.setdefault((tuple(prefix(int(s))), int(s)), cost)
    items = sorted(found.items(), key=lambda kv: kv[1])
    return PathCover([list(k[0]) for k, _ in items], [k[1] for k, _ in items], [float(v) for _, v in items],
                     [[int(w) for w in lat.olabel[list(k[0])] if w] for k, _ in items])


def apply_path_scores(lat: Lattice, cover: PathCover, nn_word_costs, ngram_word_costs, weight: float) -> Lattice:
    """Step 5: ``graph += weight * (nn - ngram)`` with each arc's and final weight's estimate."""
    arc_delta = np.full(lat.num_arcs, np.nan)
    final_delta = np.full(lat.num_states, np.nan)
    for arcs, end, nn, ng in zip(cover.arcs, cover.final, nn_word_costs, ngram_word_costs):
        k = 0
        for a in arcs:
            if lat.olabel[a] == 0:
                if np.isnan(arc_delta[a]):
                    arc_delta[a] = 0.0
                continue
            if np.isnan(arc_delta[a]):
                arc_delta[a] = nn[k] - ng[k]
            k += 1
        if np.isnan(final_delta[end]):
            final_delta[end] = nn[k] - ng[k]
    final = lat.is_final()
    arc_delta = np.nan_to_num(arc_delta)  # arcs on no complete path (none after pruning) change nothing
    final_delta = np.where(final, np.nan_to_num(final_delta), 0.0)
    return lat.replace(graph=lat.graph + weight * arc_delta,
                       final_graph=np.where(final, lat.final_graph + weight * final_delta, INF))


# --- the weight-0 self-check ---------------------------------------------------------------------------------
@dataclass
class FirstPassCheck:
    """``--check``: at weight 0 a rescored lattice must give the first pass's best path at every LM weight.

    Rescoring changes nothing at weight 0 but pruning, so for each LM weight of Kaldi's scoring sweep
    (``lattice-scale --inv-acoustic-scale=LMWT``) the best path of the weight-0 output must equal, in words
    and cost (up to float ties), the best path of the pruned input, which is the input's own best path
    unless pruning removed it (counted in ``pruned_away``: a wider ``--beam`` keeps it). Anything else is a
    bug, reported with the utterance and LM weight.
    """
    source: str | None = None  # the lattices' rspecifier, for messages
    lm_weights: tuple = tuple(range(7, 18))
    compared: int = 0
    same: int = 0
    ties: int = 0
    pruned_away: int = 0

    def add(self, key, original: Lattice, pruned: Lattice, rescored: Lattice) -> None:
        from asr_lm_quant.scoring.bestpath import best_paths
        k = len(self.lm_weights)
        settings = (np.ones(k), 1.0 / np.asarray(self.lm_weights, float), np.zeros(k))
        ref, pr, out = (best_paths(x, *settings, key=key) for x in (original, pruned, rescored))
        for lmwt, r, p, o in zip(self.lm_weights, ref, pr, out):
            if r is None:
                continue
            self.compared += 1
            tol = 1e-5 * max(1.0, abs(r.cost))
            if o is None or p is None or abs(o.cost - p.cost) > tol:
                got = "no path" if o is None else f"cost {o.cost:.6g}"
                raise CheckFailed(self.source, f"self-check failed at LMWT {lmwt}: at weight 0 the rescored "
                                               f"lattice's best path has {got}, the pruned first pass "
                                               f"{'no path' if p is None else f'cost {p.cost:.6g}'}", key=key)
            if o.words != p.words and not self._has_path(pruned, o.words, p.cost, 1.0 / lmwt, tol):
                raise CheckFailed(self.source, f"self-check failed at LMWT {lmwt}: at weight 0 the rescored "
                                               "lattice's best path is not a path of the first pass", key=key)
            if p.cost > r.cost + tol:
                self.pruned_away += 1
            elif o.words == r.words:
                self.same += 1
            else:
                self.ties += 1  # another path of equal cost

    @staticmethod
    def _has_path(lat, words, cost, acoustic_scale, tol) -> bool:
        """Whether ``lat`` has a path with ``words`` at ``cost`` (searched among the cheapest paths)."""
        from asr_lm_quant.kaldi.nbest import nbest_paths
        for q in nbest_paths(lat, 50, acoustic_scale):
            c = q.total_cost(acoustic_scale)
            if c > cost + tol:
                return False
            if q.words == list(words) and abs(c - cost) <= tol:
                return True
        return False

    def summary(self) -> dict:
        return {"lm_weights": list(self.lm_weights), "compared": self.compared, "same_best_path": self.same,
                "equal_cost_ties": self.ties, "best_path_pruned_away": self.pruned_away}


class CheckFailed(InputError):
    """The weight-0 self-check failed (a bug, or a lattice our algorithms cannot handle): no output."""


# --- whole lattices and jobs --------------------------------------------------------------------------------
def rescore_lattices(items, scorer, ngram_lm, symbols, weights, *, acoustic_scale: float = 0.1,
                     beam: float = 5.0, epsilon: float = 0.5, check: FirstPassCheck | None = None):
    """Rescore ``(key, CompactLattice)`` pairs scored together; yields ``(key, {weight: lattice})``.

    With ``check``, each lattice also goes through :meth:`FirstPassCheck.add` at weight 0."""
    prepared = []
    for key, orig in items:
        lat = pruned = orig
        if lat.start >= 0:
            lat = pruned = prune(lat, beam, acoustic_scale)
            lat = expand_unique_histories(lat, epsilon, acoustic_scale)
        cover = path_cover(lat, acoustic_scale)
        prepared.append((key, orig, pruned, lat, cover))
    texts = [symbols.words(w, key=key) for key, _, _, _, cov in prepared for w in cov.words]
    nn = scorer.word_costs(texts) if texts else []
    ng = [np.array(ngram_lm.word_costs(t, eos=True)) for t in texts]
    i = 0
    for key, orig, pruned, lat, cover in prepared:
        k = len(cover.arcs)
        nn_p, ng_p = nn[i:i + k], ng[i:i + k]
        i += k
        if lat.start < 0 or k == 0:
            out = {w: lat for w in weights}
        else:
            out = {w: apply_path_scores(lat, cover, nn_p, ng_p, w) for w in weights}
        if check is not None:
            w0 = out[0.0] if 0.0 in out else (lat if k == 0 else apply_path_scores(lat, cover, nn_p, ng_p, 0.0))
            check.add(key, orig, pruned, w0)
        yield key, out


def rescore_lattice_job(*, scorer, ngram_lm, symbols, weights, lattices: str, out_lattices: dict,
                        acoustic_scale: float = 0.1, beam: float = 5.0, epsilon: float = 0.5,
                        chunk: int = 50, check: bool = False, overwrite: bool = True) -> dict:
    """Rescore every lattice of the rspecifier ``lattices``; ``out_lattices``: weight -> wspecifier.

    ``check``: run :class:`FirstPassCheck` on every lattice (a failure raises :class:`CheckFailed` and
    writes nothing); its counts go into the summary."""
    weights = [float(w) for w in weights]
    checker = FirstPassCheck(source=lattices) if check else None
    writers = open_writers(out_lattices, weights, overwrite)
    summary = {"utterances": 0, "paths": 0, "arcs": 0, "weights": weights, "nn_seconds": 0.0}
    ok = False
    try:
        batch = []
        stream = read_lattices(lattices, kind="compact")
        while True:
            batch = [x for _, x in zip(range(chunk), stream)]
            if not batch:
                break
            for key, by_w in rescore_lattices(batch, scorer, ngram_lm, symbols, weights,
                                              acoustic_scale=acoustic_scale, beam=beam, epsilon=epsilon,
                                              check=checker):
                for w, wr in writers.items():
                    wr.write(key, by_w[w])
                summary["utterances"] += 1
                summary["arcs"] += by_w[weights[0]].num_arcs
            summary["paths"] += scorer.stats.hypotheses
            summary["nn_seconds"] += scorer.stats.seconds
        ok = True
    finally:
        for wr in writers.values():
            wr.close(ok=ok)
    if checker is not None:
        summary["check"] = checker.summary()
        if checker.pruned_away:
            log.warning("--check: at %d of %d (utterance, LMWT) pairs pruning (--beam %g) removed the first "
                        "pass's best path", checker.pruned_away, checker.compared, beam)
    return summary


def open_writers(out_lattices: dict, weights, overwrite: bool) -> dict:
    """weight -> LatticeWriter for each weight that has an output; if one cannot be opened, those already open
    are closed without output."""
    writers = {}
    try:
        for w in weights:
            if w in out_lattices:
                writers[w] = LatticeWriter(out_lattices[w], overwrite=overwrite)
    except BaseException:
        for wr in writers.values():
            wr.close(ok=False)
        raise
    return writers
