"""Lattice algorithms checked against brute-force enumeration of all paths of small lattices."""

import itertools

import numpy as np
import pytest

from asr_lm_quant.kaldi import algorithms as alg
from asr_lm_quant.kaldi.lattice import Lattice, linear_lattice, union_lattices
from asr_lm_quant.kaldi.nbest import lattice_to_nbest, nbest_paths
from asr_lm_quant.kaldi.synthetic import random_compact_lattice


def all_paths(lat):
    """Every complete path as (arc list, final state)."""
    offs = lat.arc_offsets()
    out = []

    def walk(s, arcs):
        if lat.is_final()[s]:
            out.append((list(arcs), s))
        for i in range(offs[s], offs[s + 1]):
            arcs.append(i)
            walk(int(lat.dst[i]), arcs)
            arcs.pop()
    walk(lat.start, [])
    return out


def path_cost(lat, arcs, f, ac=1.0, lm=1.0, wip=0.0):
    return (lm * (lat.graph[arcs].sum() + lat.final_graph[f]) + ac * (lat.acoustic[arcs].sum()
            + lat.final_acoustic[f]) + wip * np.count_nonzero(lat.olabel[arcs]))


@pytest.fixture(scope="module")
def small_lattices():
    rng = np.random.default_rng(3)
    return [random_compact_lattice(rng, num_frames=25, num_states=9, arcs_per_state=2.5, vocab=6,
                                   eps_prob=0.2) for _ in range(6)]


@pytest.mark.parametrize("ac,lm,wip", [(1.0, 1.0, 0.0), (0.1, 1.0, 0.0), (1 / 12, 1.0, 0.5), (0.1, 0.7, -1)])
def test_best_path_and_nbest_match_enumeration(small_lattices, ac, lm, wip):
    for lat in small_lattices:
        paths = all_paths(lat)
        costs = np.array([path_cost(lat, a, f, ac, lm, wip) for a, f in paths])
        best = alg.best_path(lat, ac, lm, wip)
        assert best.total_cost(ac, lm, wip) == pytest.approx(costs.min(), rel=1e-9)
        n = min(15, len(paths))
        nb = nbest_paths(lat, n, ac, lm, wip, unique=False)
        assert np.allclose([p.total_cost(ac, lm, wip) for p in nb], np.sort(costs)[:n])
        # Distinct word sequences: each sequence once, with its best cost, in order.
        by_words = {}
        for (a, f), c in zip(paths, costs):
            w = tuple(int(x) for x in lat.olabel[a] if x)
            by_words[w] = min(by_words.get(w, np.inf), c)
        uniq = nbest_paths(lat, 10, ac, lm, wip)
        assert [tuple(p.words) for p in uniq] == [w for w, _ in sorted(by_words.items(), key=lambda x: x[1])[:10]]
        # Graph and acoustic costs are kept apart and unscaled.
        for p in uniq:
            assert p.graph_cost == pytest.approx(lat.graph[p.arcs].sum() + lat.final_graph[p.final_state])
            assert p.num_frames == 25


def test_posteriors_match_enumeration(small_lattices):
    ac = 0.1
    for lat in small_lattices:
        paths = all_paths(lat)
        logp = -np.array([path_cost(lat, a, f, ac) for a, f in paths])
        total = np.logaddexp.reduce(logp)
        expect = np.zeros(lat.num_arcs)
        for (a, _), lp in zip(paths, logp):
            for i in a:
                expect[i] += np.exp(lp - total)
        post, fpost, tot = alg.arc_posteriors(lat, ac)
        assert tot == pytest.approx(-total)
        assert np.allclose(post, expect, atol=1e-9)
        assert fpost[lat.is_final()].sum() == pytest.approx(1.0)


def test_prune_keeps_paths_within_beam_and_only_their_arcs(small_lattices):
    # As Kaldi's lattice-prune: every path within the beam survives, and every surviving arc lies on one.
    for lat in small_lattices:
        for beam in (0.0, 2.0, 8.0):
            paths = all_paths(lat)
            costs = np.array([path_cost(lat, a, f, 0.1) for a, f in paths])
            within = costs <= costs.min() + beam + 1e-9
            key = lambda a, f, L: tuple((int(L.ilabel[i]), float(L.graph[i]), float(L.acoustic[i])) for i in a)  # noqa
            pruned = alg.prune(lat, beam, acoustic_scale=0.1)
            kept = {key(a, f, pruned) for a, f in all_paths(pruned)}
            assert {key(a, f, lat) for (a, f), w in zip(paths, within) if w} <= kept
            arcs_in_beam = {(int(lat.ilabel[i]), float(lat.graph[i]), float(lat.acoustic[i]))
                            for (a, _), w in zip(paths, within) if w for i in a}
            assert {(int(l), float(g), float(c)) for l, g, c in zip(pruned.ilabel, pruned.graph,
                                                                   pruned.acoustic)} == arcs_in_beam
        post_pruned = alg.prune_by_posterior(lat, 3.0, acoustic_scale=0.1)
        post, _, _ = alg.arc_posteriors(lat, 0.1)
        assert post_pruned.num_arcs <= int((post >= np.exp(-3.0)).sum())
        assert alg.best_path(post_pruned, 0.1).words == alg.best_path(lat, 0.1).words


def test_top_sort_of_shuffled_lattice(small_lattices):
    rng = np.random.default_rng(0)
    lat = small_lattices[0]
    perm = rng.permutation(lat.num_states)
    shuffled = lat.renumber_states(perm, lat.num_states)
    assert np.any(shuffled.dst <= shuffled.src)
    ts = alg.top_sort(shuffled)
    assert np.all(ts.dst > ts.src)
    assert alg.best_path(ts, 0.1).words == alg.best_path(lat, 0.1).words
    cyc = Lattice.from_arcs([(0, 1, 1, 1, 0, 0), (1, 0, 2, 2, 0, 0)], {1: (0.0, 0.0)})
    with pytest.raises(alg.CyclicLatticeError):
        alg.topological_order(cyc)


def test_scale_penalty_and_times(small_lattices):
    lat = small_lattices[1]
    s = alg.scale(lat, acoustic_scale=0.1, lm_scale=2.0)
    assert np.allclose(s.acoustic, lat.acoustic * 0.1) and np.allclose(s.graph, lat.graph * 2)
    assert np.array_equal(s.is_final(), lat.is_final())
    w = alg.add_word_insertion_penalty(lat, 0.5)
    assert np.allclose(w.graph - lat.graph, 0.5 * (lat.olabel != 0))
    assert alg.best_path(w, 0.1).words == alg.best_path(lat, 0.1, word_ins_penalty=0.5).words
    times = alg.state_times(lat)
    assert times[lat.start] == 0 and np.all(times[lat.dst] == times[lat.src] + lat.arc_ali_lengths())
    assert alg.num_frames(lat) == 25


def test_linear_lattice_union_and_nbest_keys():
    a = linear_lattice([4, 8, 15], 10.5, 100.25)
    b = linear_lattice([16, 23], 9.0, 120.0, word_alignments=[[1, 2], [3]], final_alignment=[4])
    assert alg.best_path(a).words == [4, 8, 15]
    p = alg.best_path(b)
    assert (p.graph_cost, p.acoustic_cost, p.alignment.tolist()) == (9.0, 120.0, [1, 2, 3, 4])
    u = union_lattices([a, b])
    assert alg.best_path(u, 1.0).words == [4, 8, 15]
    assert alg.best_path(u, 0.01).words == [16, 23]
    entries = lattice_to_nbest("sw02001-A_000098-001156", u, 5, acoustic_scale=1.0)
    assert [k for k, _, _ in entries] == ["sw02001-A_000098-001156-1", "sw02001-A_000098-001156-2"]
    k, lin, path = entries[1]
    assert alg.best_path(lin).words == [16, 23] and alg.best_path(lin).alignment.tolist() == [1, 2, 3, 4]


def test_nbest_on_permuted_duplicates():
    # Two paths with the same words: unique=True keeps the cheaper one only.
    lat = Lattice.from_arcs([(0, 1, 7, 7, 1.0, 1.0), (0, 1, 7, 7, 2.0, 1.0), (0, 1, 8, 8, 5.0, 0.0)],
                            {1: (0.0, 0.0)})
    assert [(p.words, p.graph_cost) for p in nbest_paths(lat, 3)] == [([7], 1.0), ([8], 5.0)]
    assert len(nbest_paths(lat, 3, unique=False)) == 3
    assert list(itertools.islice(nbest_paths(Lattice.empty(), 3), 1)) == []
