"""The lattice N-best scoring benchmark and the eval2000 projection: their data, arithmetic and tables, and
one small end-to-end run of each (a tiny model, so that it takes seconds)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant.kaldi.nbest import lattice_to_nbest
from asr_lm_quant.kaldi.symbols import SymbolTable

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY_CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "conf" / "lm_tiny.json"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def lat_bench():
    return _load("bench_nbest_from_lattices")


@pytest.fixture(scope="module")
def proj():
    return _load("bench_eval2000_projection")


def test_synthetic_lattices_give_decoder_shaped_nbest_lists(lat_bench):
    V = 30000
    lats = lat_bench.synthetic_lattices(5, 40, V)
    assert [k for k, _ in lats] == [f"utt{u:05d}" for u in range(40)]
    again = lat_bench.synthetic_lattices(5, 40, V)
    assert all(np.array_equal(a.olabel, b.olabel) and np.allclose(a.graph, b.graph)
               for (_, a), (_, b) in zip(lats, again))
    symbols = lat_bench.synthetic_symbols(V)
    lists = lat_bench.nbest_lists(lats, 100, symbols)
    assert len(lists) == 40
    for hyps in lists:
        assert len({tuple(h) for h in hyps}) == len(hyps) <= 100  # distinct word sequences
        assert all(w.startswith("w") and 1 <= int(w[1:]) <= V - 2 for h in hyps for w in h)
    shape = lat_bench.nbest_shape(lists)
    assert 8 <= np.mean([len(h[0]) for h in lists]) <= 16  # a 1-best of ~12 words
    assert shape["length_sd_within_utt_mean"] > 0.5  # hypotheses differ in length
    q25, median, _ = shape["first_difference_rel_q25_median_q75"]
    assert median < 0.5 and q25 < 0.25  # ... and most leave the 1-best in its first half
    assert 0.2 < shape["trie_words_over_words"] < 0.8
    # the lists are lattice-to-nbest's at acoustic scale 0.1
    key, lat = lats[3]
    assert lists[3] == [symbols.words(p.words) for _, _, p in lattice_to_nbest(key, lat, 100, 0.1)]


def test_nbest_shape_counts(lat_bench):
    utts = [[["a", "b", "c"], ["a", "x"], ["y", "b", "c", "d"]], [["p"], ["p", "q"]]]
    s = lat_bench.nbest_shape(utts)
    assert (s["utterances"], s["hypotheses"], s["words"]) == (2, 5, 12)
    assert s["words_per_hyp_min"] == 1 and s["words_per_hyp_max"] == 4
    assert s["first_difference_rel_q25_median_q75"] == pytest.approx([1 / 6, 1 / 3, 2 / 3])  # of 1/3, 0, 1
    # trie nodes: a ab abc ax y yb ybc ybcd (8) + p pq (2)
    assert s["trie_words_over_words"] == pytest.approx(10 / 12)
    assert s["length_sd_within_utt_mean"] == pytest.approx((np.std([3, 2, 4]) + np.std([1, 2])) / 2)


def test_model_vocabulary_from_a_kaldi_words_txt(lat_bench):
    symbols = SymbolTable.from_words(["uh", "yeah", "<unk>", "[noise]"])
    vocab = lat_bench.model_vocabulary(symbols.words_in_order(), 12)
    assert vocab.words[:2] == ["<s>", "<unk>"]
    assert vocab.words[2:6] == ["[noise]", "uh", "yeah", "filler0"]
    assert "<eps>" not in vocab and "#0" not in vocab and "</s>" not in vocab
    assert len(vocab) == 12 and len(set(vocab.words)) == 12
    assert vocab.words[-1] == "filler6"


def test_decode_dir_lattices_read_in_job_order(lat_bench, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures" / "rescore"))
    try:
        import tiny
    finally:
        sys.path.pop(0)
    t = tiny.build(tmp_path)
    dec = tiny.build_kaldi_decode_dir(t, utts=6, jobs=3)
    got = lat_bench.decode_dir_lattices(str(dec["decode"]), 4)
    assert [k for k, _ in got] == dec["utts"][:4]
    symbols = SymbolTable.load(dec["words"])
    lists = lat_bench.nbest_lists(got, 20, symbols)
    assert all(1 <= len(h) <= 20 for h in lists)
    assert lists[0][0] == symbols.words(lattice_to_nbest(got[0][0], got[0][1], 1, 0.1)[0][2].words)
    with pytest.raises(Exception, match="no lat"):
        lat_bench.decode_dir_lattices(str(tmp_path), 4)


def test_projection_arithmetic(proj):
    measured = {"jobs": [{"wall_s": 25.0, "cpu_s": 14.0}, {"wall_s": 20.0, "cpu_s": 13.0}]}
    startup = {"wall_s": 5.0, "cpu_s": 4.0}
    p = proj.project(measured, startup, [10, 10], [100, 50])
    # pooled: (20 + 15) s of wall work over 20 utterances, times the larger job's 100
    assert p["wall_s"] == pytest.approx(5 + 35 / 20 * 100)
    assert p["idle_2_cores_s"] == pytest.approx(4 + 19 / 20 * 100)


def test_conversational_lengths_have_many_short_segments(proj):
    from asr_lm_quant.kaldi.algorithms import best_path
    lats = proj.conversational_lattices(3, 200, 600, "u")
    assert [k for k, _ in lats[:2]] == ["u00000", "u00001"]
    words = [len([w for w in best_path(lat, 0.1).words]) if best_path(lat, 0.1) else 0 for _, lat in lats]
    short = sum(1 for n in words if n <= 3) / len(words)
    assert 0.25 < short < 0.6 and 6 < np.mean(words) < 14


def test_markdown_tables(lat_bench, proj):
    machine = {"cpu": "AMD EPYC", "cpu_count": 2, "avx512_bf16": False, "load_average_at_start": [3.0, 3, 3],
               "date": "2026-12-01"}
    res = {"machine": machine, "threads": 1, "source": {"synthetic": "..."},
           "model": {"config": "recipes/swbd/conf/lm_swbd.json", "vocab_size": 30000},
           "nbest": {"100": {"shape": {"utterances": 4, "hypotheses": 400, "words_per_hyp_mean": 12.34},
                             "variants": {
                                 "naive": {"seconds": 10.0, "cpu_seconds": 9.0, "words_per_cpu_s": 548.0,
                                           "x_naive_cpu": 1.0, "x_naive_wall": 1.0, "peak_rss_growth_mb": 300},
                                 "trie_fp32": {"seconds": 2.5, "cpu_seconds": 2.25, "words_per_cpu_s": 2192.0,
                                               "x_naive_cpu": 4.0, "x_naive_wall": 4.0, "peak_rss_growth_mb": 5,
                                               "max_cost_diff_vs_naive": 2e-4},
                                 "ptq2": {"error": "boom"}}}}}
    md = lat_bench.markdown(res).splitlines()
    assert "1 thread(s)" in md[0] and "avx512_bf16 no" in md[0] and "2026-12-01" in md[0]
    assert md[5] == "| 100 | 4 | 400 | 12.3 | trie_fp32 | 2.50 | 2.25 | 2,192 | 4.00 | 4.00 | 5 | 2.0e-04 |"
    assert md[4].endswith("| naive | 10.00 | 9.00 | 548 | 1.00 | 1.00 | 300 | - |") and "error: boom" in md[6]
    r = {"machine": machine, "set": {"utterances": 4459, "lattices": "synthetic"}, "repeats": 3,
         "subset": {"utterances_per_job": [30, 30]}, "model": {"config": "c", "vocab_size": 30000},
         "naive_baseline": {"jobs": [{"scoring_wall_s": 90.0, "scoring_cpu_s": 60.0}] * 2,
                            "projected_full": {"wall_s": 6690.0, "idle_2_cores_s": 4460.0}},
         "variants": {"fp32+prune": {"subset": {"hypotheses": 6000, "pruned": 1000, "nn_positions": 30000},
                                     "projected_full": {"wall_s_median": 2400.0, "idle_2_cores_s_min": 1100.0,
                                                        "idle_2_cores_s_median": 1200.0,
                                                        "x_naive_idle_2_cores": 4460 / 1200},
                                     "measured_full": {"wall_s": 1500.0}}}}
    md = proj.markdown(r).splitlines()
    assert "4459 utterances" in md[0] and "60 utterances" in md[0] and "3 interleaved runs" in md[0]
    assert md[4] == "| naive baseline (NN scoring only) | - | - | - | 74.3 min | 111.5 min | - | 1.00 |"
    assert md[5] == ("| rescore-nbest fp32+prune | 5000 / 6000 | 30000 | 18.3 min | 20.0 min | 40.0 min | "
                     "25.0 min | 3.72 |")


def test_bench_runs_end_to_end_on_a_tiny_model(lat_bench, tmp_path):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = lat_bench.main(["--config", str(TINY_CONFIG), "--vocab", "600", "--sizes", "20", "--repeats", "1",
                         "--variants", "naive,trie_fp32,selfnorm,ptq4", "--work-dir", str(tmp_path / "m"),
                         "--out", str(out), "--md", str(md)])
    assert rc == 0
    res = json.loads(out.read_text())
    block = res["nbest"]["20"]
    rows = block["variants"]
    assert set(rows) == {"naive", "trie_fp32", "selfnorm", "ptq4"}
    assert all("error" not in r for r in rows.values()), rows
    words = block["shape"]["words"]
    assert all(r["words"] == words for r in rows.values())
    assert rows["trie_fp32"]["max_cost_diff_vs_naive"] < 1e-3  # the same costs as Kaldi's way
    assert rows["naive"]["x_naive_cpu"] == 1.0
    assert rows["trie_fp32"]["stats"]["positions"] < words + block["shape"]["hypotheses"]  # prefixes shared
    assert res["model"]["files"]["ptq4"]["plan_bits"] == [4]
    assert res["model"]["declared_self_norm_alpha"] > 0
    assert md.read_text().count("\n| 20 |") == 4


def test_projection_runs_end_to_end_on_a_tiny_model(proj, tmp_path):
    out = tmp_path / "p.json"
    rc = proj.main(["--config", str(TINY_CONFIG), "--vocab", "600", "--utts", "12", "--subset", "4",
                    "--repeats", "2", "--variants", "fp32,selfnorm+prune", "--work-dir", str(tmp_path / "m"),
                    "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["subset"]["utterances_per_job"] == [2, 2] and res["set"]["utterances_per_job"] == [6, 6]
    for v in ("fp32", "selfnorm+prune"):
        row = res["variants"][v]
        assert row["subset"]["utterances"] == 4 and row["subset"]["hypotheses"] > 4
        assert len(row["runs"]) == 2
        projected = [proj.project(x["measured_subset"], x["startup_no_utterance"], [2, 2], [6, 6])
                     for x in row["runs"]]
        assert row["projected_full"]["idle_2_cores_s_min"] == pytest.approx(
            min(p["idle_2_cores_s"] for p in projected))
    assert res["variants"]["fp32"]["subset"]["pruned"] == 0
    nb = res["naive_baseline"]
    assert sum(j["words"] for j in nb["jobs"]) == res["variants"]["fp32"]["subset"]["words_scored"]
