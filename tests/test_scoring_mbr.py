"""MBR decoding (Kaldi's lattice-mbr-decode): the recursion against a plain-loop transcription of the paper,
against exact expected edit distances from enumerating every path, closed forms on sausages, state numbering,
and ``score-kaldi --decode-mbr`` end to end."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mbr_reference as ref  # noqa: E402

from asr_lm_quant.kaldi.lattice import Lattice, compact_to_lattice, linear_lattice  # noqa: E402
from asr_lm_quant.kaldi.synthetic import permute_states, random_compact_lattice, with_parallel_arcs  # noqa: E402
from asr_lm_quant.scoring.mbr import DELTA, mbr_decode, mbr_sweep, normalize_eps  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def small_lattice(rng, *, states=None, vocab=6):
    lat = random_compact_lattice(rng, num_frames=40, num_states=int(states or rng.integers(3, 12)),
                                 arcs_per_state=3.0, vocab=vocab, eps_prob=0.2, acoustic_scale=1.0)
    return with_parallel_arcs(rng, lat, 0.3)


def sausage(rng, slots, *, alternatives=3, arcs=5):
    """A confusion network without epsilons: slot i's words are 10 i + 1 .. 10 i + alternatives, each slot
    has ``arcs`` parallel arcs (a word may have several), probabilities on the graph cost."""
    rows, post = [], []
    for i in range(slots):
        p = rng.dirichlet(np.ones(arcs))
        words = 10 * i + 1 + rng.integers(0, alternatives, size=arcs)
        rows += [(i, i + 1, int(w), int(w), float(-np.log(pi)), 0.0) for w, pi in zip(words, p)]
        post.append({int(w): float(p[words == w].sum()) for w in np.unique(words)})
    return Lattice.from_arcs(rows, {slots: (0.0, 0.0)}), post


def exact_loss(lat, words, ac=1.0):
    return ref.expected_edit_distance(ref.paths(lat, ac), words)


def test_normalize_eps():
    assert normalize_eps([5, 0, 7]).tolist() == [0, 5, 0, 7, 0]
    assert normalize_eps([]).tolist() == [0]


def test_recursion_matches_the_plain_loop_transcription():
    rng = np.random.default_rng(1)
    changed = 0
    for t in range(100):
        lat = small_lattice(rng)
        if t % 2:
            lat = permute_states(rng, lat)
        ac, wip = float(rng.choice([0.05, 0.1, 0.3])), float(rng.choice([0.0, 0.5]))
        beam = 6.0 if t % 3 == 0 else None
        arcs, big_n, map_words = ref.prepare(lat, ac, 1.0, wip, beam)
        words, risk, gamma = ref.mbr(arcs, big_n, map_words)
        got = mbr_decode(lat, ac, 1.0, wip, beam=beam)
        assert got.map_words == map_words
        assert got.words == words
        assert got.bayes_risk == pytest.approx(risk, rel=1e-9, abs=1e-12)
        assert len(got.sausage) == len(gamma)
        for mine, theirs in zip(got.sausage, gamma):
            assert dict(mine) == pytest.approx(theirs, abs=1e-6)
        changed += got.words != got.map_words
    assert changed >= 1  # MBR did move away from the best path somewhere


def test_sweep_batch_equals_one_setting_at_a_time():
    rng = np.random.default_rng(7)
    lat = permute_states(rng, with_parallel_arcs(rng, random_compact_lattice(
        rng, num_frames=120, num_states=40, arcs_per_state=3.0, vocab=8, eps_prob=0.15, acoustic_scale=1.0)))
    lmwts = [7, 10, 13, 17]
    gs, ac, wp = [1.0] * 8, [1 / x for x in lmwts] * 2, [0.0] * 4 + [1.0] * 4
    batch = mbr_sweep(lat, gs, ac, wp, beam=6.0)
    for k in range(8):
        one = mbr_decode(lat, ac[k], gs[k], wp[k], beam=6.0)
        assert batch[k].words == one.words and batch[k].map_words == one.map_words
        assert batch[k].bayes_risk == pytest.approx(one.bayes_risk, rel=1e-9)
        assert batch[k].iterations == one.iterations


def test_on_a_linear_lattice_the_risk_is_the_edit_distance():
    lat = linear_lattice([1, 2, 3, 4], 3.0, 10.0)
    for hyp in ([1, 2, 3, 4], [1, 3, 4], [2, 1, 3, 4, 5], [], [7, 8], [1, 2, 2, 3, 4]):
        res = mbr_decode(lat, hypothesis=hyp, do_mbr=False)
        assert res.words == hyp
        # Exact up to the 1e-5 that each move staying on a position costs.
        assert res.bayes_risk == pytest.approx(ref.edit_distance([1, 2, 3, 4], hyp), abs=20 * DELTA)
    res = mbr_decode(lat)
    assert res.words == [1, 2, 3, 4] and res.bayes_risk < 1e-4
    assert [s[0] for s in res.sausage] == [(0, 1.0), (1, 1.0), (0, 1.0), (2, 1.0), (0, 1.0), (3, 1.0), (0, 1.0),
                                           (4, 1.0), (0, 1.0)]


def test_recursion_is_an_upper_bound_close_to_the_exact_expected_edit_distance():
    rng = np.random.default_rng(11)
    gaps = []
    for _ in range(40):
        lat = small_lattice(rng, states=rng.integers(4, 9))
        all_paths = ref.paths(lat, 0.2)
        for hyp in (mbr_decode(lat, 0.2).map_words, list(rng.integers(1, 6, size=rng.integers(0, 5)))):
            approx = mbr_decode(lat, 0.2, hypothesis=hyp, do_mbr=False).bayes_risk
            exact = ref.expected_edit_distance(all_paths, hyp)
            # Min over expected costs >= expected min; the 1e-5 per staying move only adds. (1e-6: the
            # recursion works on float32 weights, as Kaldi's.)
            assert approx >= exact - 1e-6
            gaps.append(approx - exact)
    assert np.mean(gaps) < 0.05 and np.max(gaps) < 0.5


def test_on_a_sausage_mbr_is_the_per_slot_argmax_and_exact():
    rng = np.random.default_rng(3)
    differ = 0
    for _ in range(30):
        lat, post = sausage(rng, int(rng.integers(1, 6)))
        best = [max(p, key=p.get) for p in post]
        res = mbr_decode(lat)
        assert res.words == best
        # The expected edit distance is the expected number of slot errors, and the recursion gets it.
        exact = exact_loss(lat, res.words)
        assert exact == pytest.approx(sum(1 - max(p.values()) for p in post), abs=1e-9)
        assert res.bayes_risk == pytest.approx(exact, abs=1e-3)
        # The sausage statistics are the slot posteriors (epsilon bins between them hold nothing).
        assert [dict(s) for s in res.sausage[1::2]] == [pytest.approx(p, abs=1e-6) for p in post]
        map_loss = exact_loss(lat, res.map_words)
        assert exact <= map_loss + 1e-12
        differ += res.words != res.map_words
        if res.words != res.map_words:
            assert exact < map_loss
    assert differ >= 5  # parallel arcs make the best path disagree with the posteriors


def test_mbr_beats_the_best_path_on_random_lattices_on_average():
    rng = np.random.default_rng(5)
    mbr_total = map_total = 0.0
    for _ in range(60):
        lat = small_lattice(rng, states=rng.integers(4, 10), vocab=4)
        res = mbr_decode(lat, 0.1)
        all_paths = ref.paths(lat, 0.1)
        mbr_total += ref.expected_edit_distance(all_paths, res.words)
        map_total += ref.expected_edit_distance(all_paths, res.map_words)
    assert mbr_total < map_total


def test_state_numbering_and_lattice_type_do_not_matter():
    rng = np.random.default_rng(9)
    for _ in range(10):
        lat = small_lattice(rng, states=rng.integers(6, 14))
        a = mbr_decode(lat, 0.1, beam=6.0)
        b = mbr_decode(permute_states(rng, lat), 0.1, beam=6.0)
        assert b.words == a.words and b.map_words == a.map_words
        assert b.bayes_risk == pytest.approx(a.bayes_risk, rel=1e-9)
        assert [dict(s) for s in b.sausage] == [pytest.approx(dict(s), abs=1e-9) for s in a.sausage]
        # A Lattice (one arc per frame) is read as its CompactLattice; a final weight with transition-ids
        # comes back as an epsilon arc into a new final state, which costs the recursion 1e-5 moves.
        c = mbr_decode(compact_to_lattice(lat), 0.1, beam=6.0)
        assert c.words == a.words and c.map_words == a.map_words
        assert c.bayes_risk == pytest.approx(a.bayes_risk, abs=1e-4)


def test_no_successful_path_and_empty_lattice():
    lat = Lattice.from_arcs([(0, 1, 1, 1, 0.0, 1.0)], {})
    assert mbr_decode(lat) is None
    assert mbr_sweep(lat, [1.0, 1.0], [0.1, 0.2], [0.0, 0.0]) == [None, None]
    assert mbr_decode(Lattice.empty()) is None
    only_start = Lattice.from_arcs([], {0: (0.0, 0.0)}, num_states=1)
    res = mbr_decode(only_start)
    assert res.words == [] and res.bayes_risk == 0.0 and res.sausage == [[(0, 1.0)]]


# --- score-kaldi --decode-mbr -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kd(tmp_path_factory):
    from conftest import TINY as tiny
    t = tiny.build(tmp_path_factory.mktemp("mbr_dir"))
    t.update(tiny.build_kaldi_decode_dir(t))
    return t


def _run(args, cwd, ok=True):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd)
    if ok:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_score_kaldi_decode_mbr_end_to_end(kd, tmp_path):
    from asr_lm_quant.kaldi.archive import read_lattice_dict
    from asr_lm_quant.scoring.textfile import read_text

    dec = kd["decode"]
    _run([REPO / "steps/score_kaldi.sh", "--decode-mbr", "true", kd["data"], kd["graph"], dec], tmp_path)
    assert sorted(p.name for p in dec.glob("wer_*_*")) == sorted(
        f"wer_{lmwt}_{wip}" for lmwt in range(7, 18) for wip in ("0.0", "0.5", "1.0"))
    best = (dec / "scoring_kaldi/best_wer").read_text().split()
    assert best[0] == "%WER" and 0.0 < float(best[1]) < 50.0 and best[-1].startswith(f"{dec}/wer_")
    for name in ("per_utt", "per_spk", "ops", "lmwt", "wip"):
        assert (dec / "scoring_kaldi/wer_details" / name).is_file()
    # The hypotheses are each lattice's MBR result at that setting, after lattice-prune --beam=6 (Kaldi's).
    lats = read_lattice_dict(f"ark:gunzip -c {dec}/lat.*.gz|")
    settings = ((10, "0.5"), (7, "0.0"), (17, "1.0"))
    results = {(lmwt, wip, key): mbr_decode(lat, 1.0 / lmwt, 1.0, float(wip), beam=6.0)
               for lmwt, wip in settings for key, lat in lats.items()}
    to_words = lambda ids: [kd["symbols"].word(w) for w in ids]  # noqa: E731
    for lmwt, wip in settings:
        hyp = read_text(dec / f"scoring_kaldi/penalty_{wip}/{lmwt}.txt")
        assert hyp == {key: to_words(results[lmwt, wip, key].words) for key in lats}
    mbr_wer = {p.name: p.read_text() for p in dec.glob("wer_*_*")}
    # Best-path scoring of the same dir: the same files, and its hypotheses are the MBR runs' start points.
    _run([sys.executable, "-m", "asr_lm_quant.cli", "score-kaldi", "--no-plot", "--overwrite", kd["data"],
          kd["graph"], dec], tmp_path)
    assert sorted(p.name for p in dec.glob("wer_*_*")) == sorted(mbr_wer)
    for lmwt, wip in settings:
        hyp = read_text(dec / f"scoring_kaldi/penalty_{wip}/{lmwt}.txt")
        assert hyp == {key: to_words(results[lmwt, wip, key].map_words) for key in lats}
    assert sum(r.words != r.map_words for r in results.values()) > 0


def test_score_kaldi_decode_mbr_errors(kd, tmp_path):
    base = [sys.executable, "-m", "asr_lm_quant.cli", "score-kaldi", kd["data"], kd["graph"], tmp_path / "out"]
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("spk0-utt000 a b\n")
    res = _run([*base, "--decode-mbr", "--hyp", f"10:0.0:{hyp}"], tmp_path, ok=False)
    assert res.returncode != 0 and "--decode-mbr needs the lattices" in res.stderr and "Traceback" not in res.stderr
    res = _run([*base, "--decode-mbr", "--mbr-beam", "-1"], tmp_path, ok=False)
    assert res.returncode != 0 and "--mbr-beam must be a non-negative number" in res.stderr
    assert not (tmp_path / "out").exists()
    res = _run([REPO / "steps/score_kaldi.sh", "--decode-mbr", "true", "--hyp", f"10:0.0:{hyp}", kd["data"],
                kd["graph"], tmp_path / "out"], tmp_path, ok=False)
    assert res.returncode == 1 and "cannot be used with --hyp" in res.stderr
