"""N-best and lattice rescoring on a tiny model, a tiny ARPA and a tiny decode dir built here."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.algorithms import best_path, topological_order
from asr_lm_quant.kaldi.archive import read_lattice_dict, read_lattices
from asr_lm_quant.kaldi.lattice import linear_lattice
from asr_lm_quant.kaldi.nbest import NbestHyp, nbest_paths, read_float_table, write_nbest
from asr_lm_quant.nbest.read import read_nbest
from asr_lm_quant.ngram import ArpaLM
from asr_lm_quant.rescore.lattice import expand_unique_histories, path_cover, rescore_lattices
from asr_lm_quant.rescore.nbest import interpolate, rescore_hypotheses
from asr_lm_quant.rescore.nnscore import NNScorer

REPO = Path(__file__).resolve().parents[1]
from conftest import TINY as tiny  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("rescore"))


@pytest.fixture(scope="module")
def scorer(setup):
    return NNScorer(setup["model"], setup["vocab"])


@pytest.fixture(scope="module")
def old(setup):
    return ArpaLM(setup["arpa"])


def test_interpolation_on_a_hand_made_nbest(setup, scorer, old):
    hyps = [NbestHyp("u1", 1, "i think that".split(), 100.0, 20.0),
            NbestHyp("u1", 2, "i think zebra".split(), 99.0, 25.5),
            NbestHyp("u2", 1, [], 10.0, 3.0)]
    out = rescore_hypotheses(hyps, scorer, old, [0.0, 0.5, 1.0])
    assert sorted(out) == [0.0, 0.5, 1.0]
    for i, h in enumerate(hyps):
        o = old.sentence_cost(h.words)
        nn = scorer.costs([h.words])[0]
        assert out[0.0][i].lm_cost == pytest.approx(h.lm_cost, abs=1e-9)  # w=0 keeps the old LM
        assert out[1.0][i].lm_cost == pytest.approx(h.lm_cost - o + nn, abs=1e-4)
        assert out[0.5][i].lm_cost == pytest.approx(h.lm_cost - o + 0.5 * nn + 0.5 * o, abs=1e-4)
        assert out[0.5][i].acoustic_cost == h.acoustic_cost and out[0.5][i].words == h.words
    assert interpolate(10.0, 4.0, 6.0, 0.25) == pytest.approx(10 - 4 + 1.5 + 3.0)


def test_rescore_nbest_from_decode_dir(setup, tmp_path, scorer, old):
    t = setup
    lat_in = f"ark:gunzip -c {t['decode']}/lat.1.gz|"
    rc = main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--words", str(t["words"]),
               "--lattices", lat_in, "--n", "4", "--acwt", "0.1", "--weight", "0.3,0.8",
               "--out-lattices", f"ark:|gzip -c >{tmp_path}/w{{weight}}/lat.1.gz",
               "--out-tables", f"{tmp_path}/w{{weight}}/archives.1", "--out-nbest", f"{tmp_path}/w{{weight}}.tsv",
               "--json", f"{tmp_path}/summary.json"])
    assert rc == 0
    inputs = read_lattice_dict(lat_in, kind="compact")
    syms = t["symbols"]
    for w in (0.3, 0.8):
        rows = read_nbest(tmp_path / f"w{w:g}.tsv")
        lats = read_lattice_dict(f"ark:gunzip -c {tmp_path}/w{w:g}/lat.1.gz|")
        assert list(lats) == list(inputs)  # one lattice per utterance, keyed by the utterance id
        tables = tmp_path / f"w{w:g}" / "archives.1"
        interp = read_float_table(tables / f"lmwt.interp.{w:g}")
        withlm = read_float_table(tables / "lmwt.withlm")
        lmonly = read_float_table(tables / "lmwt.lmonly")
        nn = read_float_table(tables / "lmwt.nn")
        for utt, lat in inputs.items():
            mine = [r for r in rows if r.utterance == utt]
            paths = nbest_paths(lat, 4, 0.1)
            assert [r.words for r in mine] == [syms.words(p.words) for p in paths]
            for r, p in zip(mine, paths):
                key = f"{utt}-{r.rank}"
                o = old.sentence_cost(r.words)
                c = scorer.costs([r.words])[0]
                assert r.lm_cost == pytest.approx(p.graph_cost - o + w * c + (1 - w) * o, abs=1e-4)
                assert r.acoustic_cost == pytest.approx(p.acoustic_cost, abs=1e-6)
                assert interp[key] == pytest.approx(r.lm_cost, rel=1e-5, abs=1e-4)
                assert withlm[key] == pytest.approx(p.graph_cost, rel=1e-5, abs=1e-4)
                assert lmonly[key] == pytest.approx(o, rel=1e-5) and nn[key] == pytest.approx(c, rel=1e-5)
            # the rescored lattice holds exactly the rescored paths; its best path is the best of them
            out_paths = nbest_paths(lats[utt], 100, 0.1)
            assert sorted(tuple(syms.words(p.words)) for p in out_paths) == sorted(tuple(r.words) for r in mine)
            bp = best_path(lats[utt], 0.1)
            best = min(mine, key=lambda r: r.lm_cost + 0.1 * r.acoustic_cost)
            assert syms.words(bp.words) == best.words
            assert bp.graph_cost == pytest.approx(best.lm_cost, abs=1e-3)
            assert bp.num_frames == paths[0].num_frames  # alignments kept
        assert (tables / "words").read_text().splitlines()[0].endswith(" ")


def test_rescore_nbest_from_tsv(setup, tmp_path, scorer, old):
    t = setup
    hyps = [NbestHyp("a", 1, "i like the dog".split(), 50.0, 12.0), NbestHyp("a", 2, "i like the zebra".split(),
            51.0, 14.0), NbestHyp("b", 1, "so we know".split(), 30.0, 9.0)]
    write_nbest(tmp_path / "in.jsonl", hyps)
    rc = main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--nbest",
               str(tmp_path / "in.jsonl"), "--weight", "0.8", "--out-nbest", str(tmp_path / "out.tsv")])
    assert rc == 0
    out = read_nbest(tmp_path / "out.tsv")
    assert [(h.utterance, h.rank) for h in out] == [("a", 1), ("a", 2), ("b", 1)]
    for h, r in zip(hyps, out):
        o, c = old.sentence_cost(h.words), scorer.costs([h.words])[0]
        assert r.lm_cost == pytest.approx(h.lm_cost + 0.8 * (c - o), abs=1e-4)


def test_rescore_nbest_from_an_espnet_decode_dir(setup, tmp_path, scorer):
    # No --old-lm: an end-to-end recogniser's score is its whole cost; the NN LM is added at weight w.
    t = setup
    src = REPO / "tests" / "fixtures" / "nbest" / "espnet" / "decode_dev"
    rc = main(["rescore-nbest", "--lm-dir", str(t["lm"]), "--nbest", str(src), "--weight", "0.5",
               "--out-nbest", str(tmp_path / "out.tsv")])
    assert rc == 0
    out = read_nbest(tmp_path / "out.tsv")
    assert [(h.utterance, h.rank) for h in out][:4] == [("dev-001", 1), ("dev-001", 2), ("dev-001", 3), ("dev-002", 1)]
    assert out[1].text == "i think that" and out[1].acoustic_cost == pytest.approx(4.3377)
    assert out[1].lm_cost == pytest.approx(0.5 * scorer.costs([out[1].words])[0], abs=1e-4)


def test_references_carried_through_rescore_nbest_to_decide_nbest(setup, tmp_path, capsys):
    # A generic JSON n-best with its references: rescore-nbest writes them into its JSON lines, so that
    # decide-nbest on its output needs no --dev-ref; TSV (a fixed set of columns) carries none.
    import json
    from asr_lm_quant.nbest.read import read_references
    t = setup
    src = REPO / "tests" / "fixtures" / "nbest" / "generic.json"
    out = tmp_path / "dev.{weight}.jsonl"
    assert main(["rescore-nbest", "--lm-dir", str(t["lm"]), "--nbest", str(src), "--weight", "0.5,1",
                 "--out-nbest", str(out)]) == 0
    rows = [json.loads(x) for x in (tmp_path / "dev.0.5.jsonl").read_text().splitlines()]
    assert [r.get("reference") for r in rows] == ["i think that", None, None, "the kids know school", None,
                                                  "um we mean that"]
    assert read_references(tmp_path / "dev.1.0.jsonl") == read_references(src) == {
        "dev-001": ["i", "think", "that"], "dev-002": ["the", "kids", "know", "school"],
        "dev-003": ["um", "we", "mean", "that"]}
    capsys.readouterr()
    assert main(["decide-nbest", "--dev", str(out), "--weight", "0.5,1", "--test", str(out), "--lm-scales", "0,1",
                 "--out", str(tmp_path / "decided")]) == 0
    summary = json.loads(capsys.readouterr().out)
    d = json.loads((tmp_path / "decided" / "decision.json").read_text())
    assert d["dev"]["total"]["ref_words"] == 11 and d["test"]["total"]["ref_words"] == 11
    assert summary["dev_oracle_wer"] == 0.0 and summary["dev_wer"] == summary["test_wer"]
    assert main(["rescore-nbest", "--lm-dir", str(t["lm"]), "--nbest", str(src), "--out-nbest",
                 str(tmp_path / "o.tsv")]) == 0
    assert read_references(tmp_path / "o.tsv") == {}


def test_cli_errors_name_the_file(setup, tmp_path, capsys):
    t = setup
    rc = main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--nbest",
               str(tmp_path / "missing.tsv"), "--out-nbest", str(tmp_path / "o.tsv")])
    assert rc == 1 and "missing.tsv" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\tx\ta b\t1\t2\n")
    rc = main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--nbest", str(bad),
               "--out-nbest", str(tmp_path / "o.tsv")])
    assert rc == 1 and "line 2" in capsys.readouterr().err
    assert not (tmp_path / "o.tsv").exists()  # no partial output
    rc = main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--nbest", str(bad),
               "--weight", "0.2,0.4", "--out-nbest", str(tmp_path / "o.tsv")])
    assert rc == 1 and "{weight}" in capsys.readouterr().err


# --- lattice rescoring --------------------------------------------------------------------------------
def test_single_path_lattice_equals_nbest_rescoring(setup, scorer, old):
    syms = setup["symbols"]
    words = "uh i think the zebra".split()
    lat = linear_lattice(syms.ids(words), 20.0, 300.0)
    # spread the costs over the arcs as a decoder would
    lat = lat.replace(graph=np.array([1.0, 2.0, 3.0, 4.0, 5.0]), acoustic=np.full(5, 50.0),
                      final_graph=np.where(lat.is_final(), 5.0, np.inf),
                      final_acoustic=np.where(lat.is_final(), 50.0, np.inf))
    hyp = NbestHyp("u", 1, words, 300.0, 20.0)
    for w in (0.0, 0.5, 0.8):
        (key, by_w), = list(rescore_lattices([("u", lat)], scorer, old, syms, [w]))
        p = best_path(by_w[w], 0.1)
        expect = rescore_hypotheses([hyp], scorer, old, [w])[w][0].lm_cost
        assert p.graph_cost == pytest.approx(expect, abs=1e-4)
        assert p.acoustic_cost == pytest.approx(300.0)


def test_expansion_keeps_paths_and_cover_covers_every_arc(setup):
    rng = np.random.default_rng(4)
    from asr_lm_quant.kaldi.synthetic import random_compact_lattice
    for _ in range(5):
        lat = random_compact_lattice(rng, num_frames=40, num_states=9, arcs_per_state=2.5, vocab=20, max_tid=50)
        exp = expand_unique_histories(lat, 0.3, 0.1)
        topological_order(exp)  # still acyclic
        a = [(tuple(p.words), round(p.graph_cost, 3), round(p.acoustic_cost, 3)) for p in nbest_paths(lat, 50, 0.1)]
        b = [(tuple(p.words), round(p.graph_cost, 3), round(p.acoustic_cost, 3)) for p in nbest_paths(exp, 50, 0.1)]
        assert a == b
        cover = path_cover(exp, 0.1)
        covered = {x for arcs in cover.arcs for x in arcs}
        assert covered == set(range(exp.num_arcs))
        assert cover.cost == sorted(cover.cost)


def test_lattice_rescoring_job_and_comparison_with_nbest(setup, tmp_path):
    t = setup
    lat_in = f"ark:gunzip -c {t['decode']}/lat.2.gz|"
    rc = main(["rescore-lattice", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--words",
               str(t["words"]), "--lattices", lat_in, "--weight", "0.8", "--beam", "1000", "--epsilon", "0.5",
               "--out-lattices", f"ark:|gzip -c >{tmp_path}/lat.2.gz"])
    assert rc == 0
    inputs = read_lattice_dict(lat_in, kind="compact")
    out = dict(read_lattices(f"ark:gunzip -c {tmp_path}/lat.2.gz|"))
    assert list(out) == list(inputs)
    scorer, old, syms = NNScorer(t["model"], t["vocab"]), ArpaLM(t["arpa"]), t["symbols"]
    for utt, lat in out.items():
        # On the best path of the rescored lattice the estimate is exact (that path covers its own arcs):
        p = best_path(lat, 0.1)
        words = syms.words(p.words)
        orig = [q for q in nbest_paths(inputs[utt], 1000, 0.1) if syms.words(q.words) == words][0]
        expect = orig.graph_cost + 0.8 * (scorer.costs([words])[0] - old.sentence_cost(words))
        assert p.graph_cost == pytest.approx(expect, abs=1e-3)


# --- step scripts ---------------------------------------------------------------------------------------
def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("script", ["lmrescore_nbest.sh", "lmrescore_lattice.sh"])
def test_step_script_end_to_end(setup, tmp_path, script):
    t = setup
    out = tmp_path / "decode_rescored"
    extra = ["--N", "5"] if "nbest" in script else ["--beam", "8"]
    cmd = [str(REPO / "steps" / script), "--weight", "0.7", "--acwt", "0.1", "--skip-scoring", "true", *extra,
           str(t["arpa"]), str(t["lm"]), str(t["data"]), str(t["decode"]), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    assert (out / "num_jobs").read_text() == (t["decode"] / "num_jobs").read_text()
    keys = []
    for j in (1, 2):
        assert (out / "log" / f"rescore.{j}.log").exists()
        keys += list(read_lattice_dict(f"ark:gunzip -c {out}/lat.{j}.gz|"))
    assert sorted(keys) == sorted(t["utts"])
    if "lattice" in script:
        return  # the re-run and error paths below are shared by both scripts; check them once
    # re-runnable: a second run succeeds and gives the same lattices
    before = gzip.decompress((out / "lat.1.gz").read_bytes())
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert res.returncode == 0 and gzip.decompress((out / "lat.1.gz").read_bytes()) == before
    # bad input: missing decode dir -> non-zero exit, message names it
    bad = subprocess.run(cmd[:-2] + [str(tmp_path / "nope"), str(out)], capture_output=True, text=True,
                         env=_env())
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_nbest_from_a_recogniser_without_an_lm(setup, tmp_path, scorer, capfd):
    # No --old-lm: nothing is removed and the NN LM is added; weights 0.0 and 1.0 name their files so;
    # an OOV penalty is charged per word the NN LM lacks; kenlm says nothing on stderr.
    t = setup
    nb = tmp_path / "whisper.tsv"
    write_nbest(nb, [NbestHyp("u1", 1, "i think that".split(), 3.0, 0.0),
                     NbestHyp("u1", 2, "i think zebra".split(), 2.5, 0.0)])
    out = tmp_path / "out.{weight}.tsv"
    assert main(["rescore-nbest", "--lm-dir", str(t["lm"]), "--nbest", str(nb), "--weight", "0,1",
                 "--out-nbest", str(out), "--oov-penalty", "4"]) == 0
    zero, one = read_nbest(tmp_path / "out.0.0.tsv"), read_nbest(tmp_path / "out.1.0.tsv")
    nn = scorer.costs(["i think that".split(), "i think zebra".split()])
    assert [h.lm_cost for h in zero] == [0.0, 0.0]
    assert one[0].lm_cost == pytest.approx(nn[0], abs=1e-4)
    assert one[1].lm_cost == pytest.approx(nn[1] + 4.0, abs=1e-4)  # 'zebra' is not in the NN LM
    assert main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--nbest", str(nb),
                 "--out-nbest", str(tmp_path / "o2.tsv")]) == 0
    err = capfd.readouterr().err
    assert "Loading the LM" not in err and "----5---10" not in err
    assert main(["rescore-nbest", "--lm-dir", str(t["lm"]), "--nbest", str(nb), "--acwt", "0.1",
                 "--out-nbest", str(tmp_path / "o3.tsv")]) == 1
    assert "--acwt applies to --lattices only" in capfd.readouterr().err
