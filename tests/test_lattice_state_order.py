"""Every lattice algorithm gives the same answer whatever the state numbering of the lattice.

Kaldi does not promise topologically numbered lattices (determinization leaves arcs into lower state ids, the
start state anywhere, final states anywhere). Each test permutes the states of random lattices (and the order
of each state's arcs) and checks that results are identical up to that renumbering: CompactLattice and
Lattice, with epsilon arcs, several final states (one with an alignment on its final weight) and parallel
arcs with the same word.
"""

import io

import numpy as np
import pytest

from asr_lm_quant.kaldi import algorithms as alg
from asr_lm_quant.kaldi.archive import read_archive_stream, read_lattices, write_lattices
from asr_lm_quant.kaldi.algorithms import lattice_to_compact
from asr_lm_quant.kaldi.lattice import compact_to_lattice
from asr_lm_quant.kaldi.nbest import nbest_paths
from asr_lm_quant.kaldi.synthetic import permute_states, random_compact_lattice, with_parallel_arcs
from asr_lm_quant.rescore.lattice import expand_unique_histories, path_cover, rescore_lattices
from asr_lm_quant.scoring.bestpath import best_paths

AC = 0.1


def _lattices(seed, n=6, compact=True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lat = random_compact_lattice(rng, num_frames=30, num_states=10, arcs_per_state=2.5, vocab=8,
                                     eps_prob=0.2, max_tid=60)
        lat = with_parallel_arcs(rng, lat, 0.25)
        out.append(lat if compact else compact_to_lattice(lat))
    return out


def _permutations(lat, seed, k=3):
    """``k`` renumberings of ``lat`` of which none is topological and none starts at state 0."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < k:
        p = permute_states(rng, lat)
        if p.start != 0 and np.any(p.dst <= p.src):
            out.append(p)
    return out


def _all_paths(lat):
    """Every complete path as (words, graph, acoustic, alignment), sorted: the lattice's meaning."""
    offs = lat.arc_offsets()
    fin = lat.is_final()
    out = []

    def walk(s, arcs):
        if fin[s]:
            p = alg.path_from_arcs(lat, arcs, s)
            out.append((tuple(p.words), round(p.graph_cost, 3), round(p.acoustic_cost, 3),
                        tuple(p.alignment.tolist())))
        for i in range(offs[s], offs[s + 1]):
            walk(int(lat.dst[i]), arcs + [i])
    if lat.start >= 0:
        walk(lat.start, [])
    return sorted(out)


@pytest.fixture(scope="module", params=["compact", "lattice"])
def cases(request):
    compact = request.param == "compact"
    lats = _lattices(11 if compact else 12, compact=compact)
    return [(lat, _permutations(lat, i)) for i, lat in enumerate(lats)]


def test_permuted_lattices_are_really_not_topological(cases):
    for lat, perms in cases:
        for p in perms:
            assert p.start != 0 and np.any(p.dst <= p.src)
            assert _all_paths(p) == _all_paths(lat)


def test_best_path_nbest_and_sweep(cases):
    for lat, perms in cases:
        ref = alg.best_path(lat, AC)
        ref_nb = [(tuple(p.words), round(p.total_cost(AC), 6)) for p in nbest_paths(lat, 12, AC)]
        ref_all = [round(p.total_cost(AC), 6) for p in nbest_paths(lat, 30, AC, unique=False)]
        settings = ([1.0, 1.0, 1.0], [1 / 7, 1 / 10, 1 / 15], [0.0, 0.5, -0.5])
        ref_sweep = [(b.words, round(b.cost, 4)) for b in best_paths(lat, *settings)]
        for p in perms:
            bp = alg.best_path(p, AC)
            assert bp.words == ref.words
            assert bp.total_cost(AC) == pytest.approx(ref.total_cost(AC), abs=1e-9)
            assert bp.alignment.tolist() == ref.alignment.tolist()
            assert [(tuple(q.words), round(q.total_cost(AC), 6)) for q in nbest_paths(p, 12, AC)] == ref_nb
            assert [round(q.total_cost(AC), 6) for q in nbest_paths(p, 30, AC, unique=False)] == ref_all
            assert [(b.words, round(b.cost, 4)) for b in best_paths(p, *settings)] == ref_sweep


def test_posteriors_times_and_pruning(cases):
    for lat, perms in cases:
        post, fpost, total = alg.arc_posteriors(lat, AC)
        times = alg.state_times(lat)
        frames = alg.num_frames(lat)
        pruned = {b: _all_paths(alg.prune(lat, b, AC)) for b in (0.0, 2.0, 6.0)}
        by_post = _all_paths(alg.prune_by_posterior(lat, 3.0, AC))
        for p in perms:
            p_post, p_fpost, p_total = alg.arc_posteriors(p, AC)
            assert p_total == pytest.approx(total, abs=1e-9)
            # Posteriors of arcs and final weights, as multisets keyed by the arc's labels and costs.
            key = lambda L, v: sorted(zip(zip(L.ilabel.tolist(), L.olabel.tolist(), np.round(L.graph, 4).tolist(),  # noqa: E731
                                                  np.round(L.acoustic, 4).tolist()), np.round(v, 9).tolist()))
            assert key(p, p_post) == key(lat, post)
            assert sorted(np.round(p_fpost[p.is_final()], 9)) == sorted(np.round(fpost[lat.is_final()], 9))
            assert sorted(alg.state_times(p).tolist()) == sorted(times.tolist())
            assert alg.state_times(p)[p.start] == 0
            assert alg.num_frames(p) == frames
            for b, ref in pruned.items():
                assert _all_paths(alg.prune(p, b, AC)) == ref
            assert _all_paths(alg.prune_by_posterior(p, 3.0, AC)) == by_post
            ts = alg.top_sort(p)
            assert np.all(ts.dst > ts.src) and _all_paths(ts) == _all_paths(lat)


def test_conversions(cases):
    for lat, perms in cases:
        ref = _all_paths(lat)
        for p in perms:
            assert _all_paths(lattice_to_compact(p)) == ref
            assert _all_paths(compact_to_lattice(p)) == ref
            assert _all_paths(alg.connect(p)) == ref


@pytest.mark.parametrize("binary", [True, False])
def test_written_and_read_back_unchanged(cases, tmp_path, binary):
    for n, (lat, perms) in enumerate(cases):
        for k, p in enumerate(perms):
            path = tmp_path / f"{n}.{k}.ark"
            write_lattices(f"ark{'' if binary else ',t'}:{path}", [("utt", p)])
            (_, back), = read_lattices(f"ark:{path}")
            # Text keeps 6 digits of a cost; binary every bit. Numbering, start and order are kept.
            assert back.start == p.start and back.compact == p.compact
            assert back.equals(p, rtol=0 if binary else 1e-5)


def test_expansion_and_path_cover(cases):
    for lat, perms in cases:
        if not lat.compact:
            continue
        e = expand_unique_histories(lat, 0.3, AC)
        ref_paths = _all_paths(lat)
        assert _all_paths(e) == ref_paths
        ref_cover = path_cover(e, AC)
        for p in perms:
            pe = expand_unique_histories(p, 0.3, AC)
            assert _all_paths(pe) == ref_paths
            assert (pe.num_states, pe.num_arcs) == (e.num_states, e.num_arcs)
            cover = path_cover(pe, AC)
            covered = {a for arcs in cover.arcs for a in arcs}
            assert covered == set(range(pe.num_arcs))
            assert sorted(map(tuple, cover.words)) == sorted(map(tuple, ref_cover.words))
            assert np.allclose(sorted(cover.cost), sorted(ref_cover.cost))


class _Symbols:
    def words(self, ids, key=None):
        return [f"w{i}" for i in ids]


class _LengthLM:
    """A stand-in LM whose per-word costs depend on the word and on its position (so histories matter)."""

    def __init__(self, scale):
        self.scale = scale

        class Stats:
            hypotheses = 0
            seconds = 0.0
        self.stats = Stats()

    def _costs(self, words):
        return np.array([self.scale * (1 + int(w[1:]) % 5 + 0.1 * i) for i, w in enumerate(words)]
                        + [self.scale * 0.5 * len(words)])

    def word_costs(self, texts, eos=True):
        if isinstance(texts[0] if texts else None, str) or not texts:
            return self._costs(texts)
        return [self._costs(t) for t in texts]


def test_rescored_lattices_are_the_same_lattice(cases):
    nn, ng = _LengthLM(1.0), _LengthLM(0.3)
    for lat, perms in cases:
        if not lat.compact:
            continue
        (_, ref), = rescore_lattices([("u", lat)], nn, ng, _Symbols(), [0.0, 0.7], acoustic_scale=AC, beam=6.0)
        ref_paths = {w: _all_paths(x) for w, x in ref.items()}
        # Weight 0 keeps the first pass: same paths and costs inside the beam.
        assert ref_paths[0.0] == _all_paths(alg.prune(lat, 6.0, AC))
        for p in perms:
            (_, out), = rescore_lattices([("u", p)], nn, ng, _Symbols(), [0.0, 0.7], acoustic_scale=AC, beam=6.0)
            for w in (0.0, 0.7):
                assert _all_paths(out[w]) == ref_paths[w]


def test_text_and_binary_archives_of_permuted_lattices_stream(cases):
    # Both forms in one archive, read back in order, each equal to what was written.
    items = [(f"u{n}-{k}", p) for n, (_, perms) in enumerate(cases) for k, p in enumerate(perms)]
    buf = io.BytesIO()
    from asr_lm_quant.kaldi.fst_binary import write_fst_binary
    from asr_lm_quant.kaldi.fst_text import write_fst_text
    for i, (key, p) in enumerate(items):
        buf.write(key.encode() + b" ")
        buf.write(write_fst_binary(p) if i % 2 else write_fst_text(p).encode())
    buf.seek(0)
    back = list(read_archive_stream(buf, path="mem"))
    assert [k for k, _ in back] == [k for k, _ in items]
    for i, ((_, a), (_, b)) in enumerate(zip(back, items)):
        assert a.start == b.start and a.equals(b, rtol=0 if i % 2 else 1e-5)
