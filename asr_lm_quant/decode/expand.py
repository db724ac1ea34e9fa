"""Word graphs -> Kaldi CompactLattices with n-gram graph costs, states split by LM history.

A recogniser's word lattice merges paths whose histories differ, so one arc can follow several LM
contexts. Kaldi lattices carry the LM cost on each arc, so every state here is a pair (word-graph node,
LM state): an arc gets the cost of its word given exactly the history that leads to it. With a back-off
LM (kenlm states keep only the context the model can use) the expansion stays small.

Acoustic costs are the recogniser's negated log-likelihoods times ``acoustic_scale``. For pocketsphinx,
whose search weighs the LM by ``lw`` (6.5 by default), ``acoustic_scale = 10 / lw`` puts its own operating
point at LM weight 10, as Kaldi chain lattices (``--post-decode-acwt 10``) do: a Kaldi-style LMWT sweep
(7..17) brackets it and rescoring at acoustic scale 0.1 means what it means in Kaldi.

Each arc's alignment holds one transition-id per frame of the word (``frame_tid``, default 1): there is
no Kaldi transition model, but frame counts (and so word times, at the recogniser's frame shift) survive.
"""

from __future__ import annotations

import math

from asr_lm_quant.decode.pslattice import WordGraph
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import connect, top_sort
from asr_lm_quant.kaldi.lattice import Lattice


def expand_with_lm(graph: WordGraph, lm, word_ids: dict[str, int], *, acoustic_scale: float = 1.0,
                   frame_tid: int = 1, key: str | None = None) -> Lattice:
    """Build the CompactLattice of ``graph`` with ``lm`` costs (``lm``: ``begin_state``, ``word_cost``,
    ``end_cost``, as :class:`~asr_lm_quant.ngram.arpa.ArpaLM`). ``word_ids`` maps words to Kaldi ids; a
    word outside it is an error naming ``key``.

    The initial node's arcs (silence before the first word) are merged into the first word's arcs, so the
    result has no epsilon arcs. States are topologically sorted; dead states are removed.
    """
    states: dict[tuple, int] = {}
    state_node: list[int] = []
    arcs: list[tuple] = []
    finals: dict[int, tuple] = {}

    def state(node, lm_state):
        k = (node, lm_state)
        s = states.get(k)
        if s is None:
            s = states[k] = len(state_node)
            state_node.append(node)
            todo.append((node, lm_state, s))
        return s

    def word_id(node):
        w = graph.words[node]
        i = word_ids.get(w)
        if i is None:
            raise InputError(None, f"lattice word {w!r} is not in the symbol table", key=key)
        return i

    begin = lm.begin_state()
    start = 0
    states[("start",)] = 0
    state_node.append(graph.initial)
    todo: list[tuple] = []
    # Start: the silence before the first word goes onto that word's arcs.
    for a, c0, f0 in graph.arcs.get(graph.initial, ()):
        if a == graph.final:
            finals[start] = (lm.end_cost(begin), c0 * acoustic_scale, [frame_tid] * f0)
            continue
        g, after = lm.word_cost(begin, graph.words[a])
        for b, c1, f1 in graph.arcs.get(a, ()):
            arcs.append((start, state(b, after), word_id(a), g, (c0 + c1) * acoustic_scale,
                         [frame_tid] * (f0 + f1)))
    while todo:
        node, lm_state, s = todo.pop()
        if node == graph.final:
            finals[s] = (lm.end_cost(lm_state), 0.0, [])
            continue
        g, after = lm.word_cost(lm_state, graph.words[node])
        wid = word_id(node)
        for b, c, f in graph.arcs.get(node, ()):
            arcs.append((s, state(b, after), wid, g, c * acoustic_scale, [frame_tid] * f))
    lat = Lattice.from_arcs([(a[0], a[1], a[2], a[2], a[3], a[4], a[5]) for a in arcs], finals,
                            start=start, num_states=len(state_node))
    return top_sort(connect(lat))


def prune_word_graph(graph: WordGraph, lm, beam: float, *, acoustic_scale: float = 1.0,
                     lm_scale_acoustic: float = 0.1) -> WordGraph:
    """Beam-prune a word graph before expansion, scoring it with a bigram view of ``lm``.

    Expanding a dense lattice by trigram history multiplies its arcs; this first pass keeps only arcs on
    paths within ``beam`` of the best, where a path costs its acoustic cost times
    ``acoustic_scale * lm_scale_acoustic`` plus each word's LM cost given only the word before it (the
    exact history is unknown here). Use a wider beam than the final lattice beam: the bigram view is
    an estimate.
    """
    words, initial, final = graph.words, graph.initial, graph.final
    ac = acoustic_scale * lm_scale_acoustic
    null = lm.null_state()
    after: dict[int, object] = {}

    def context(node):
        st = after.get(node)
        if st is None:
            st = lm.begin_state() if node == initial else lm.word_cost(null, words[node])[1]
            after[node] = st
        return st

    def arc_cost(a, b, c):
        lm_cost = lm.end_cost(context(a)) if b == final else lm.word_cost(context(a), words[b])[0]
        return c * ac + lm_cost

    # Word nodes start strictly later than their predecessors, so start frames are a topological order.
    nodes = {initial, final} | set(graph.arcs) | {b for arcs in graph.arcs.values() for b, _, _ in arcs}
    order = sorted(nodes, key=lambda n: (graph.frames + 1 if n == final else _start(graph, n), n))
    costs = {a: [(b, arc_cost(a, b, c)) for b, c, _ in arcs] for a, arcs in graph.arcs.items()}
    alpha = dict.fromkeys(nodes, math.inf)
    alpha[initial] = 0.0
    for a in order:
        for b, c in costs.get(a, ()):
            if alpha[a] + c < alpha[b]:
                alpha[b] = alpha[a] + c
    beta = dict.fromkeys(nodes, math.inf)
    beta[final] = 0.0
    for a in reversed(order):
        for b, c in costs.get(a, ()):
            if c + beta[b] < beta[a]:
                beta[a] = c + beta[b]
    limit = beta[initial] + beam
    kept = {}
    for a, arcs in graph.arcs.items():
        keep = [arc for arc, (_, c) in zip(arcs, costs[a]) if alpha[a] + c + beta[arc[0]] <= limit]
        if keep:
            kept[a] = keep
    return WordGraph(words, initial, final, graph.frames, kept, graph.start_frame)


def _start(graph: WordGraph, node: int) -> int:
    return graph.start_frame[node]
