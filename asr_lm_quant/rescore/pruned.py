"""Pruned lattice rescoring: compose the lattice with the NN LM on the fly, under an n-gram history.

The algorithm of Kaldi's RNNLM lattice rescoring (Xu et al., "A pruned RNNLM lattice-rescoring algorithm
for automatic speech recognition", ICASSP 2018), for any word-level scorer of this package (Transformer or
LSTM, float or packed):

1. **Composed states** are pairs (lattice state, history key). The key is the last ``order - 1`` tokens of
   ``<s> w1 .. wk`` (``order`` is Kaldi's ``max-ngram-order``): histories that share them are merged, and
   the merged state keeps the full word sequence of the path that created it, which is the history the NN
   (and the old n-gram) is asked about for every arc leaving it. With ``order`` above the longest path every
   history is its own state and the result is exact rescoring of every path.
2. **Priority**: the estimated total cost through a composed state and one of its arcs is the state's
   forward cost in the composed lattice (new LM costs) plus the arc's cost plus the input lattice's own
   backward cost after it, with the LM change still to come estimated as a constant per word (and end of
   sentence): the mean change of the arcs expanded so far in this lattice, so that completions with more
   or fewer words are weighed as the new LM will weigh them (the backward costs are recomputed when that
   mean moves). A state waits in the queue at the estimate of its best arc not expanded yet.
3. **Pruning**: once some path is complete, nothing estimated beyond the best complete cost plus ``beam``
   is expanded. Each round takes states best first, only those within ``beam`` of the round's best one,
   and of each only the arcs within that limit (Kaldi expands arcs, not states): before any path is
   complete this keeps unlikely arcs waiting, not dropped, while the likely ones go first. A guard
   (``max_states`` expansions) stops the search, finishing greedily first if nothing is complete yet.
4. **Expanding** arcs scores, in one NN call with every other state of the round (``batch_states`` per
   lattice, every lattice of a chunk together, shared prefixes computed once by the scorer), the state's
   history followed by each arc's word, and the end of sentence where ending there is expanded. Each
   history + word goes on with a few words of the lattice's best completion (``lookahead``): the scorer
   keeps no state between calls, so a later state whose words were scored this way needs no call (fewer
   calls and positions). Every arc gets ``w * (nn - old)``; the old LM's per-word costs come from the same
   call of the old LM that :mod:`asr_lm_quant.rescore.lattice` uses (``word_costs(words, eos=True)``) on
   that history.
5. **Output**: the states with an expanded arc and the arcs between them, trimmed to complete paths, as
   an ordinary CompactLattice with ``graph += w * (nn - old)`` per arc and per final weight, one lattice
   per interpolation weight; the search itself runs at the largest weight asked for.

A composed state's forward cost can still improve after it was expanded (a cheaper path with the same key
arriving later); that only affects the priorities, never the costs written, which are per arc.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import (CyclicLatticeError, arc_costs, connect, final_costs,
                                           shortest_distance_to_final, topological_order)
from asr_lm_quant.kaldi.archive import read_lattices
from asr_lm_quant.kaldi.lattice import INF, Lattice, offsets_from_lengths
from asr_lm_quant.rescore.lattice import open_writers

log = logging.getLogger(__name__)

BOS = -1  # the sentence start in history keys (no word id is negative)


@dataclass(frozen=True)
class PrunedOptions:
    """``order``: n-gram history order (Kaldi's ``max-ngram-order``), at least 2.
    ``beam``: expand only states estimated within this of the best complete path (costs at ``acoustic_scale``).
    ``max_states``: most expansions per lattice (a state's arcs may be expanded over several rounds).
    ``batch_states``: states of one lattice expanded per NN round.
    ``lookahead``: each scored history + word goes on with up to this many words of the lattice's best
    completion, whose costs are kept for the states that follow (0: none)."""
    order: int = 4
    beam: float = 5.0
    max_states: int = 10000
    batch_states: int = 32
    lookahead: int = 4
    acoustic_scale: float = 0.1

    def check(self) -> None:
        if self.order < 2:
            raise InputError(None, f"--ngram-order {self.order}: must be at least 2")
        if not self.beam > 0:
            raise InputError(None, f"--beam {self.beam}: must be positive")
        if self.lookahead < 0:
            raise InputError(None, f"lookahead {self.lookahead}: must be at least 0")
        if self.max_states < 1 or self.batch_states < 1:
            raise InputError(None, f"--max-states and the batch size must be at least 1 (got {self.max_states}, "
                                   f"{self.batch_states})")


class _Search:
    """The pruned composition of one lattice; :meth:`requests` and :meth:`expand` alternate."""

    def __init__(self, key, lat: Lattice, weight: float, opts: PrunedOptions):
        self.key, self.lat, self.w, self.opts = key, lat, float(weight), opts
        self.done = lat.start < 0 or not np.isfinite(final_costs(lat).min(initial=INF))
        self.expanded_count = 0
        self.greedy = False
        # Composed states: lattice state, word ids so far, forward cost.
        self.lat_state: list = []
        self.seq: list = []
        self.alpha: list = []
        self.rest: list = []     # per state: None (untouched) or the arcs not expanded yet (-1: its end)
        self.index: dict = {}
        self.heap: list = []
        self.arcs: list = []     # (src state, dst state, lattice arc, nn cost, old cost)
        self.finals: dict = {}   # state -> (nn cost, old cost) of the end of sentence
        self.best_complete = INF
        if self.done:
            return
        self.offs = lat.arc_offsets()
        self.cost = arc_costs(lat, opts.acoustic_scale)
        self.fcost = final_costs(lat, opts.acoustic_scale)
        self.order = topological_order(lat)
        self.is_word = (lat.olabel != 0).astype(np.float64)
        self.delta_sum, self.delta_count, self.beta_delta = 0.0, 0, 0.0
        self.beta = shortest_distance_to_final(lat, self.cost, self.fcost, self.order)
        # The arc of the best completion from each state (-1: ending there is best).
        self.best_next = np.full(lat.num_states, -1, np.int64)
        for s in range(lat.num_states):
            lo, hi = self.offs[s], self.offs[s + 1]
            if hi > lo:
                j = lo + int(np.argmin(self.cost[lo:hi] + self.beta[lat.dst[lo:hi]]))
                if self.cost[j] + self.beta[lat.dst[j]] < self.fcost[s]:
                    self.best_next[s] = j
        self._state(int(lat.start), (), 0.0)

    # -- composed states ---------------------------------------------------------------------------------
    def _history_key(self, seq):
        return ((BOS,) + seq)[-(self.opts.order - 1):]

    def _item_cost(self, s, a) -> float:
        """Estimated cost from lattice state ``s`` through its arc ``a`` (-1: ending there) to the end."""
        if a < 0:
            return self.fcost[s] + self.beta_delta
        return self.cost[a] + self.beta_delta * self.is_word[a] + self.beta[self.lat.dst[a]]

    def _items(self, c) -> list:
        s = self.lat_state[c]
        if self.rest[c] is not None:
            return self.rest[c]
        return list(range(self.offs[s], self.offs[s + 1])) + ([-1] if np.isfinite(self.fcost[s]) else [])

    def _estimate(self, c) -> float:
        """Estimated total cost of the best path through ``c`` and an arc of it not expanded yet."""
        s, rest = self.lat_state[c], self.rest[c]
        if rest is None:
            return self.alpha[c] + self.beta[s]
        return self.alpha[c] + min((self._item_cost(s, a) for a in rest), default=INF)

    @property
    def expanded_states(self) -> int:
        return sum(r is not None for r in self.rest)

    def _update_beta(self) -> None:
        """Backward costs with the mean LM change per word so far; the queue re-ordered by them."""
        mean = self.delta_sum / self.delta_count if self.delta_count else 0.0
        if abs(mean - self.beta_delta) <= 0.02:
            return
        self.beta_delta = mean
        self.beta = shortest_distance_to_final(self.lat, self.cost + mean * self.is_word, self.fcost + mean,
                                               self.order)
        self.heap = [(self._estimate(c), c) for c in range(len(self.lat_state)) if self.rest[c] != []]
        heapq.heapify(self.heap)

    def _state(self, s, seq, alpha) -> int:
        k = (s, self._history_key(seq))
        c = self.index.get(k)
        if c is None:
            c = len(self.lat_state)
            self.index[k] = c
            self.lat_state.append(s)
            self.seq.append(seq)
            self.alpha.append(alpha)
            self.rest.append(None)
            heapq.heappush(self.heap, (self._estimate(c), c))
        elif alpha < self.alpha[c]:
            self.alpha[c] = alpha
            if self.rest[c] != []:
                heapq.heappush(self.heap, (self._estimate(c), c))
        return c

    # -- one round -----------------------------------------------------------------------------------------
    def requests(self) -> list:
        """``(composed state, its arcs to expand now)`` of this round (empty when the search is over)."""
        if self.done:
            return []
        if self.greedy:
            return self._greedy_next()
        self._update_beta()
        limit = self.best_complete + self.opts.beam
        out = []
        while self.heap and len(out) < self.opts.batch_states:
            prio, c = self.heap[0]
            if self.rest[c] == [] or prio != self._estimate(c):
                heapq.heappop(self.heap)  # expanded already, or pushed again with another estimate
                continue
            if not out:
                # A round takes states within the beam of its best one too: before any path is complete
                # that keeps unlikely states waiting (not dropped) while the likely ones go first.
                limit = min(limit, prio + self.opts.beam)
            if prio > limit:
                break
            heapq.heappop(self.heap)
            # Kaldi expands arcs, not states: only the arcs within the limit now, the others may follow.
            s, items = self.lat_state[c], self._items(c)
            now = [a for a in items if self.alpha[c] + self._item_cost(s, a) <= limit]
            out.append((c, now or [min(items, key=lambda a: self._item_cost(s, a))]))
        if self.expanded_count + len(out) > self.opts.max_states:
            out = out[:max(0, self.opts.max_states - self.expanded_count)]
            if not np.isfinite(self.best_complete):
                self.greedy = True
                return out or self._greedy_next()
            self.done = not out
        if not out:
            self.done = True
        return out

    def _greedy_next(self) -> list[int]:
        """Past ``max_states`` with no complete path: follow the best estimate to an unexpanded state."""
        if np.isfinite(self.best_complete):
            self.done = True
            return []
        c = min((c for c in range(len(self.lat_state)) if self.rest[c] != []), key=self._estimate, default=None)
        if c is None:
            self.done = True
            return []
        return [(c, list(self._items(c)))]

    def words_needed(self, c, items):
        """The words of the arcs ``items`` of composed state ``c`` (each with the words of the best completion
        after its arc, up to ``lookahead``) and whether it ends there."""
        lat, k = self.lat, self.opts.lookahead
        words = {}
        for a in items:
            if a < 0:
                continue
            w = int(lat.olabel[a])
            if w and w not in words:
                more, t = [], int(lat.dst[a])
                while len(more) < k and self.best_next[t] >= 0:
                    j = self.best_next[t]
                    if lat.olabel[j]:
                        more.append(int(lat.olabel[j]))
                    t = int(lat.dst[j])
                words[w] = tuple(more)
        return words, -1 in items

    def expand(self, c, items, nn: dict, old: dict) -> None:
        """Add the arcs ``items`` of composed state ``c`` (-1: its end of sentence); ``nn`` and ``old`` map each
        word (None: the end) to its cost."""
        done = set(items)
        self.rest[c] = [a for a in self._items(c) if a not in done]
        self.expanded_count += 1
        s, seq, alpha = self.lat_state[c], self.seq[c], self.alpha[c]
        lat = self.lat
        for a in items:
            if a < 0:
                continue
            w = int(lat.olabel[a])
            n_c, o_c = (nn[w], old[w]) if w else (0.0, 0.0)
            d = self.w * (n_c - o_c)
            if w:
                self.delta_sum, self.delta_count = self.delta_sum + d, self.delta_count + 1
            t = self._state(int(lat.dst[a]), seq + (w,) if w else seq, alpha + self.cost[a] + d)
            self.arcs.append((c, t, a, n_c, o_c))
        if self.rest[c]:
            heapq.heappush(self.heap, (self._estimate(c), c))
        if -1 in items:
            self.finals[c] = (nn[None], old[None])
            d = self.w * (nn[None] - old[None])
            self.delta_sum, self.delta_count = self.delta_sum + d, self.delta_count + 1
            total = alpha + self.fcost[s] + d
            self.best_complete = min(self.best_complete, total)

    # -- output ----------------------------------------------------------------------------------------------
    def result(self, weights) -> dict:
        """``{weight: CompactLattice}`` of the expanded part, trimmed to complete paths."""
        lat = self.lat
        if lat.start < 0 or not self.finals:
            return {w: Lattice.empty(lat.compact) for w in weights}
        keep = np.flatnonzero([r is not None for r in self.rest])
        new_id = np.full(len(self.rest), -1, np.int64)
        new_id[keep] = np.arange(len(keep))
        arcs = [x for x in self.arcs if new_id[x[1]] >= 0]
        arcs.sort(key=lambda x: new_id[x[0]])  # grouped by source already, so arc_delta keeps the arcs' order
        src = np.array([new_id[x[0]] for x in arcs], np.int64)
        dst = np.array([new_id[x[1]] for x in arcs], np.int64)
        orig = np.array([x[2] for x in arcs], np.int64)
        arc_delta = np.array([x[3] - x[4] for x in arcs], np.float64)
        states = np.asarray(self.lat_state, np.int64)[keep]
        base = lat.select_arcs(orig, src=src, dst=dst)
        flen = lat.final_ali_lengths()[states]
        fstart = lat.final_ali_offsets[:-1][states]
        fidx = np.repeat(fstart - offsets_from_lengths(flen)[:-1], flen) + np.arange(flen.sum(), dtype=np.int64)
        final_delta = np.zeros(len(keep))
        is_final = np.zeros(len(keep), bool)
        for c, (n_c, o_c) in self.finals.items():
            final_delta[new_id[c]], is_final[new_id[c]] = n_c - o_c, True
        base = base.replace(start=int(new_id[0]), final_graph=np.where(is_final, lat.final_graph[states], INF),
                            final_acoustic=np.where(is_final, lat.final_acoustic[states], INF),
                            final_ali_offsets=offsets_from_lengths(flen), final_ali=lat.final_ali[fidx])
        out = {}
        for w in weights:
            out[w] = connect(base.replace(graph=base.graph + w * arc_delta,
                                          final_graph=np.where(is_final, base.final_graph + w * final_delta, INF)))
        return out


@dataclass
class PrunedStats:
    """What :func:`rescore_lattices_pruned` did, summed over its lattices."""
    lattices: int = 0
    composed_states: int = 0
    expanded_states: int = 0   # composed states with at least one arc expanded
    expansions: int = 0        # (state, arcs) expansions: a state's arcs may be expanded in several rounds
    rounds: int = 0
    nn_queries: int = 0        # distinct histories (and history + word) sent to the NN
    nn_positions: int = 0      # model positions the scorer computed
    nn_seconds: float = 0.0
    old_lm_seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class _HistoryCosts:
    """NN and old-LM costs of the words after a history, remembered per history (word id tuple)."""

    def __init__(self, scorer, ngram_lm, symbols, stats: PrunedStats):
        self.scorer, self.ngram, self.symbols, self.stats = scorer, ngram_lm, symbols, stats
        self.nn: dict = {}    # seq -> {word or None: cost}
        self.old: dict = {}   # seq -> per-word costs of word_costs(seq, eos=True)

    def fetch(self, wanted) -> None:
        """Score, in one NN call, every (history, words, final) of ``wanted`` not known yet."""
        queries: dict = {}
        for seq, words, final, c_key in wanted:
            have = self.nn.get(seq, {})
            for w, more in words.items():
                if w not in have:
                    queries.setdefault(seq + (w,) + more, c_key)
            if final and None not in have:
                queries.setdefault(seq, c_key)
        if queries:
            seqs = list(queries)
            texts = [self.symbols.words(q, key=queries[q]) for q in seqs]
            costs = self.scorer.word_costs(texts)
            st = self.scorer.stats
            self.stats.nn_queries += len(seqs)
            self.stats.nn_positions += int(st.positions)
            self.stats.nn_seconds += float(st.seconds)
            self.stats.rounds += 1
            for q, c in zip(seqs, costs):
                # c: the cost of each word of q given the words before it, then of the end after q; every
                # prefix's next word is kept (the lookahead's, and the eos after ``history + word``, serve
                # later states).
                for i in range(len(q)):
                    self.nn.setdefault(q[:i], {})[q[i]] = float(c[i])
                self.nn.setdefault(q, {})[None] = float(c[len(q)])
        t0 = time.perf_counter()
        for seq, words, final, c_key in wanted:
            for q in [seq + (w,) for w in words] + ([seq] if final else []):
                if q not in self.old:
                    self.old[q] = self.ngram.word_costs(self.symbols.words(q, key=c_key), eos=True)
        self.stats.old_lm_seconds += time.perf_counter() - t0

    def costs(self, seq, words, final):
        nn = self.nn.get(seq, {})  # a state left by epsilon arcs only needs nothing
        out_nn = {w: nn[w] for w in words}
        out_old = {w: float(self.old[seq + (w,)][len(seq)]) for w in words}
        if final:
            out_nn[None] = nn[None]
            out_old[None] = float(self.old[seq][len(seq)])
        return out_nn, out_old


def rescore_lattices_pruned(items, scorer, ngram_lm, symbols, weights, opts: PrunedOptions,
                            stats: PrunedStats | None = None):
    """Rescore ``(key, CompactLattice)`` pairs searched together; yields ``(key, {weight: lattice})``."""
    stats = stats if stats is not None else PrunedStats()
    weights = [float(w) for w in weights]
    search_weight = max(weights)
    searches = []
    for key, lat in items:
        try:
            searches.append(_Search(key, lat, search_weight, opts))
        except CyclicLatticeError as e:
            raise InputError(key, f"cannot rescore a cyclic lattice ({e})") from None
    cache = _HistoryCosts(scorer, ngram_lm, symbols, stats)
    while True:
        todo = [(s, c, items) for s in searches for c, items in s.requests()]
        if not todo:
            break
        wanted = [(s.seq[c], *s.words_needed(c, items), s.key) for s, c, items in todo]
        cache.fetch(wanted)
        for (s, c, items), (seq, words, final, _) in zip(todo, wanted):
            s.expand(c, items, *cache.costs(seq, words, final))
    for s in searches:
        stats.lattices += 1
        stats.composed_states += len(s.lat_state)
        stats.expanded_states += s.expanded_states
        stats.expansions += s.expanded_count
        yield s.key, s.result(weights)


def rescore_lattice_pruned_job(*, scorer, ngram_lm, symbols, weights, lattices: str, out_lattices: dict,
                               opts: PrunedOptions, chunk: int = 50, overwrite: bool = True) -> dict:
    """Rescore every lattice of the rspecifier ``lattices``; ``out_lattices``: weight -> wspecifier.
    The summary counts what the NN computed (``nn_positions``) and the search expanded."""
    opts.check()
    weights = [float(w) for w in weights]
    writers = open_writers(out_lattices, weights, overwrite)
    stats = PrunedStats()
    summary = {"method": "pruned", "utterances": 0, "arcs": 0, "weights": weights,
               "options": {"ngram_order": opts.order, "beam": opts.beam, "max_states": opts.max_states,
                           "acoustic_scale": opts.acoustic_scale}}
    ok = False
    try:
        stream = read_lattices(lattices, kind="compact")
        while True:
            batch = [x for _, x in zip(range(chunk), stream)]
            if not batch:
                break
            for key, by_w in rescore_lattices_pruned(batch, scorer, ngram_lm, symbols, weights, opts, stats):
                for w, wr in writers.items():
                    wr.write(key, by_w[w])
                summary["utterances"] += 1
                summary["arcs"] += by_w[weights[0]].num_arcs
        ok = True
    finally:
        for wr in writers.values():
            wr.close(ok=ok)
    summary.update(stats.to_dict())
    return summary
