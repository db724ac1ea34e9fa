"""decide-nbest: the 1-best of n-best lists from any recogniser under scales tuned on a dev set, and its WER."""

import json

import numpy as np
import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.nbest import NbestHyp, write_nbest
from asr_lm_quant.rescore.decide import HypTable, parse_grid

HEADER = "utterance\trank\ttext\tacoustic_cost\tlm_cost\n"


def _write(path, rows):
    path.write_text(HEADER + "".join(f"{u}\t{r}\t{t}\t{a}\t{l}\n" for u, r, t, a, l in rows))
    return path


def test_grid_and_pick():
    assert parse_grid("0:1:0.25", "x") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_grid("3,1", "x") == [3.0, 1.0]
    groups = [[NbestHyp("u", 1, ["a", "b"], 10.0, 5.0), NbestHyp("u", 2, ["a"], 11.0, 2.0)]]
    t = HypTable.from_groups(groups)
    assert t.words[t.pick(0.0, 0.0)[0]] == ["a", "b"]      # acoustics alone
    assert t.words[t.pick(1.0, 0.0)[0]] == ["a"]           # 10+5 > 11+2
    assert t.words[t.pick(0.0, -2.0)[0]] == ["a", "b"]     # a bonus per word favours the longer
    tied = HypTable.from_groups([[NbestHyp("u", 2, ["x"], 1.0, 1.0), NbestHyp("u", 1, ["y"], 1.0, 1.0)]])
    assert tied.words[tied.pick(1.0, 0.0)[0]] == ["y"]    # equal costs: the better rank
    avg = HypTable.from_groups(groups, per_token="both")
    assert avg.acoustic.tolist() == [30.0, 22.0] and avg.lm.tolist() == [15.0, 4.0]


def test_tuned_on_dev_applied_to_test(tmp_path, capsys):
    # The LM knows better than the acoustics: dev needs lm_scale >= 1 to fix u2; test then gets it right too.
    dev = _write(tmp_path / "dev.tsv", [("d1", 1, "the cat", 10, 4), ("d1", 2, "a cat", 10.5, 6),
                                        ("d2", 1, "the hat", 9, 9), ("d2", 2, "the cat", 9.5, 4)])
    (tmp_path / "dev.txt").write_text("d1 the cat\nd2 the cat\n")
    test = _write(tmp_path / "test.tsv", [("en_1", 1, "a mat", 5, 9), ("en_1", 2, "the mat", 6, 3),
                                          ("sw_2", 1, "on the mat", 7, 8), ("sw_2", 2, "on a mat", 7.2, 9)])
    (tmp_path / "test.txt").write_text("en_1 the mat\nsw_2 on the mat\n")
    out = tmp_path / "out"
    assert main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"), "--test", str(test),
                 "--test-ref", str(tmp_path / "test.txt"), "--lm-scales", "0,0.5,1,2", "--penalties", "0",
                 "--subsets", "a=en_,b=sw_", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["setting"]["lm_scale"] == 0.5 and summary["dev_wer"] == 0.0 and summary["test_wer"] == 0.0
    d = json.loads((out / "decision.json").read_text())
    assert [r["errors"] for r in d["sweep"]] == [1, 0, 0, 0]  # lm_scale 0 keeps d2's 'hat'
    assert d["test"]["a"]["ref_words"] == 2 and d["test"]["b"]["ref_words"] == 3
    assert (out / "test" / "text").read_text() == "en_1 the mat\nsw_2 on the mat\n"
    assert (out / "sweep.png").stat().st_size > 1000 and "**(best)**" in (out / "sweep.md").read_text()
    # Existing results are kept without --overwrite.
    rc = main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"), "--out", str(out)])
    assert rc == 1 and "--overwrite" in capsys.readouterr().err


def test_one_file_per_interpolation_weight(tmp_path, capsys):
    (tmp_path / "dev.txt").write_text("d1 the cat\n")
    _write(tmp_path / "r.0.5.tsv", [("d1", 1, "a cat", 10, 4), ("d1", 2, "the cat", 10, 5)])
    _write(tmp_path / "r.0.8.tsv", [("d1", 1, "a cat", 10, 6), ("d1", 2, "the cat", 10, 5)])
    out = tmp_path / "o"
    assert main(["decide-nbest", "--dev", str(tmp_path / "r.{weight}.tsv"), "--weights", "0.5,0.8",
                 "--dev-ref", str(tmp_path / "dev.txt"), "--lm-scales", "1", "--penalties", "0",
                 "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["setting"]["weight"] == 0.8
    assert main(["decide-nbest", "--dev", str(tmp_path / "r.0.5.tsv"), "--weights", "0.5",
                 "--dev-ref", str(tmp_path / "dev.txt"), "--out", str(tmp_path / "x")]) == 1
    assert "{weight}" in capsys.readouterr().err


def test_oracle_wer_and_lm_switched_off(tmp_path, capsys, caplog):
    # a_1's right answer is its second hypothesis, which no setting picks; b_2 needs the LM (lm_scale 1).
    dev = _write(tmp_path / "dev.tsv", [("a_1", 1, "a cat", 10, 4), ("a_1", 2, "the cat", 10.5, 6),
                                        ("b_2", 1, "the hat", 9, 9), ("b_2", 2, "the cat", 9.5, 4)])
    (tmp_path / "dev.txt").write_text("a_1 the cat\nb_2 the cat\n")
    args = ["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"), "--test", str(dev),
            "--test-ref", str(tmp_path / "dev.txt"), "--penalties", "0", "--subsets", "a=a_,b=b_"]
    with caplog.at_level("WARNING"):
        assert main(args + ["--lm-scales", "0,1", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["setting"]["lm_scale"] == 1 and summary["lm_off"] is False
    assert summary["dev_wer"] == 25.0 and summary["dev_oracle_wer"] == 0.0 and summary["test_oracle_wer"] == 0.0
    assert "switched off" not in caplog.text
    d = json.loads((tmp_path / "o" / "decision.json").read_text())
    assert d["lm_off"] is False and d["dev"]["a"]["errors"] == 1 and d["dev"]["b"]["errors"] == 0
    for part in ("dev", "test"):
        assert {k: v["errors"] for k, v in d["oracle"][part].items()} == {"total": 0, "a": 0, "b": 0}
        assert d["oracle"][part]["total"]["ref_words"] == 4 and d["oracle"][part]["a"]["utterances"] == 1
    # Only lm_scale 0 on the grid: the LM is off, and stderr and decision.json say so.
    with caplog.at_level("WARNING"):
        assert main(args + ["--lm-scales", "0", "--out", str(tmp_path / "off")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lm_off"] is True and summary["dev_wer"] == 50.0 and summary["dev_oracle_wer"] == 0.0
    assert "the LM is switched off at the chosen setting (lm_scale 0)" in caplog.text
    assert json.loads((tmp_path / "off" / "decision.json").read_text())["lm_off"] is True


def test_interpolation_weight_0_switches_the_lm_off(tmp_path, capsys, caplog):
    (tmp_path / "dev.txt").write_text("d1 the cat\n")
    _write(tmp_path / "r.0.0.tsv", [("d1", 1, "the cat", 10, 4), ("d1", 2, "a cat", 10, 5)])
    _write(tmp_path / "r.0.5.tsv", [("d1", 1, "the cat", 10, 6), ("d1", 2, "a cat", 10, 5)])
    with caplog.at_level("WARNING"):
        assert main(["decide-nbest", "--dev", str(tmp_path / "r.{weight}.tsv"), "--weights", "0,0.5",
                     "--dev-ref", str(tmp_path / "dev.txt"), "--lm-scales", "1", "--penalties", "0",
                     "--out", str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["lm_off"] is True
    assert "switched off at the chosen setting (weight 0)" in caplog.text
    # Lists without LM costs: no LM to switch on, whatever the grid.
    _write(tmp_path / "plain.tsv", [("d1", 1, "the cat", 10, 0), ("d1", 2, "a cat", 11, 0)])
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(["decide-nbest", "--dev", str(tmp_path / "plain.tsv"), "--dev-ref", str(tmp_path / "dev.txt"),
                     "--lm-scales", "1,2", "--out", str(tmp_path / "p")]) == 0
    assert json.loads(capsys.readouterr().out)["lm_off"] is True
    assert "switched off at the chosen setting (the n-best lists have no LM costs)" in caplog.text


def test_no_matching_references_is_an_error(tmp_path, capsys):
    dev = _write(tmp_path / "dev.tsv", [("d1", 1, "the cat", 10, 4)])
    (tmp_path / "dev.txt").write_text("other the cat\n")
    assert main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"),
                 "--out", str(tmp_path / "o")]) == 1
    assert "none of the 1 utterances" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("form", ["tsv", "generic-json"])
def test_same_decision_and_wer_as_kaldi_scoring_of_the_same_lists(tmp_path, capsys, form):
    # N-best lists written as Kaldi decode-dir lattices (each list the union of its one-path lattices, as
    # nbest-to-lattice makes them): score-kaldi's sweep over LMWT with no penalty and decide-nbest's over
    # lm_scale = LMWT give the same WER at every weight and pick the same one; the lists given to decide-nbest
    # as our TSV, or in the generic JSON form with separate acoustic and LM scores and the references inside.
    from asr_lm_quant.kaldi.archive import write_lattices
    from asr_lm_quant.kaldi.lattice import linear_lattice, union_lattices
    from asr_lm_quant.kaldi.symbols import SymbolTable
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    syms = SymbolTable.from_words(vocab)
    refs, hyps = {}, []
    for u in range(40):
        utt = f"utt{u:03d}"
        ref = list(rng.choice(vocab, size=rng.integers(3, 9)))
        refs[utt] = ref
        seen = set()
        for r in range(1, 11):
            h = [w if rng.random() > 0.25 else str(rng.choice(vocab)) for w in ref]
            if rng.random() < 0.2:
                h = h[:-1]
            if tuple(h) in seen:
                continue
            seen.add(tuple(h))
            ac = float(np.float32(100 * len(ref) + rng.normal(0, 15) + 20 * sum(a != b for a, b in zip(h, ref))))
            lm = float(np.float32(5 * len(h) + rng.normal(0, 3)))
            hyps.append(NbestHyp(utt, len([x for x in hyps if x.utterance == utt]) + 1, h, ac, lm))
    (tmp_path / "text").write_text("".join(f"{u} {' '.join(r)}\n" for u, r in refs.items()))
    if form == "tsv":
        nbest, ref_opt = tmp_path / "nb.tsv", ["--dev-ref", str(tmp_path / "text")]
        write_nbest(nbest, hyps)
    else:
        nbest, ref_opt = tmp_path / "nb.json", []
        items = {}
        for h in hyps:
            it = items.setdefault(h.utterance, {"id": h.utterance, "hypotheses": [], "scores": [], "lm_scores": [],
                                                "reference": " ".join(refs[h.utterance])})
            it["hypotheses"].append(" ".join(h.words))
            it["scores"].append(-h.acoustic_cost)
            it["lm_scores"].append(-h.lm_cost)
        nbest.write_text(json.dumps(list(items.values())))
    dec = tmp_path / "decode"
    dec.mkdir()
    by_utt = {}
    for h in hyps:
        by_utt.setdefault(h.utterance, []).append(linear_lattice(syms.ids(h.words), h.lm_cost, h.acoustic_cost))
    write_lattices(f"ark:| gzip -c > {dec}/lat.1.gz", [(u, union_lattices(ls)) for u, ls in by_utt.items()])
    (dec / "num_jobs").write_text("1\n")
    syms.save(tmp_path / "words.txt")
    assert main(["score-kaldi", "--min-lmwt", "7", "--max-lmwt", "17", "--word-ins-penalty", "0.0", "--no-plot",
                 str(tmp_path), str(tmp_path / "words.txt"), str(dec)]) == 0
    kaldi = {int(p.name.split("_")[1]): [x for x in p.read_text().splitlines() if x.startswith("%WER")][0]
             for p in dec.glob("wer_*_0.0")}
    capsys.readouterr()
    assert main(["decide-nbest", "--dev", str(nbest), *ref_opt,
                 "--lm-scales", "7:17:1", "--penalties", "0", "--out", str(tmp_path / "out")]) == 0
    d = json.loads((tmp_path / "out" / "decision.json").read_text())
    ours = {int(r["lm_scale"]): r for r in d["sweep"]}
    for lmwt, line in kaldi.items():
        r = ours[lmwt]
        assert line.startswith(f"%WER {r['wer']:.2f} [ {r['errors']} / {r['ref_words']}, {r['ins']} ins, "
                               f"{r['del']} del, {r['sub']} sub ]"), (lmwt, line, r)
    best_kaldi = (tmp_path / "decode" / "scoring_kaldi" / "best_wer").read_text().split()[1]
    assert f"{d['dev']['total']['wer']:.2f}" == best_kaldi


def test_step_script(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    dev = _write(tmp_path / "dev.0.5.tsv", [("d1", 1, "a cat", 10, 9), ("d1", 2, "the cat", 10.5, 4)])
    _write(tmp_path / "test.0.5.tsv", [("t1", 1, "a hat", 10, 9), ("t1", 2, "the hat", 10.5, 4)])
    (tmp_path / "dev.txt").write_text("d1 the cat\n")
    (tmp_path / "test.txt").write_text("t1 the hat\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [str(repo / "steps/decide_nbest.sh"), "--weights", "0.5", "--lm-scales", "0,1", "--penalties", "0",
           str(tmp_path / "dev.{weight}.tsv"), str(tmp_path / "dev.txt"), str(tmp_path / "test.{weight}.tsv"),
           str(tmp_path / "test.txt"), str(tmp_path / "out")]
    for _ in range(2):  # re-runnable
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr
        assert '"test_wer": 0.0' in p.stdout
    assert (tmp_path / "out" / "test" / "text").read_text() == "t1 the hat\n"
    assert (tmp_path / "out" / "log" / "decide.log").exists()
    assert dev.exists()


def test_normalisation_applies_to_both_sides(tmp_path, capsys):
    from asr_lm_quant.rescore.decide import normalize_words
    assert normalize_words(["The", "U.S.", "isn't", "100%", "&", "co,"], "asr") == \
        ["the", "u", "s", "isn't", "100", "and", "co"]
    assert normalize_words(["The", "Cat"], "lower") == ["the", "cat"]
    dev = _write(tmp_path / "dev.tsv", [("d1", 1, "The cat, sat.", 1, 1)])
    (tmp_path / "dev.txt").write_text("d1 the Cat sat\n")
    for how, wer in (("none", 100.0), ("asr", 0.0)):
        assert main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"), "--normalize", how,
                     "--out", str(tmp_path / how)]) == 0
        assert json.loads(capsys.readouterr().out)["dev_wer"] == wer


def test_generic_json_nbest_with_its_references(tmp_path, capsys):
    from pathlib import Path

    from asr_lm_quant.nbest.read import read_nbest
    from asr_lm_quant.nbest.formats.generic_json import read_generic_json
    src = Path(__file__).resolve().parent / "fixtures" / "nbest" / "generic.json"
    groups, refs = read_generic_json(src)
    assert [len(g) for g in groups] == [3, 2, 1] and refs["dev-002"] == "the kids know school".split()
    assert groups[0][1].acoustic_cost == pytest.approx(3.9) and groups[2][0].acoustic_cost == 0.0
    assert [h.utterance for h in read_nbest(src)] == ["dev-001"] * 3 + ["dev-002"] * 2 + ["dev-003"]
    # Scores alone pick 'zebra' and 'kid': 2 errors of 11 words; an LM would be needed to fix them.
    assert main(["decide-nbest", "--dev", str(src), "--lm-scales", "0", "--penalties", "0",
                 "--out", str(tmp_path / "o")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["dev_wer"] == pytest.approx(100 * 2 / 11)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "u1", "hypotheses": ["a", "b"], "scores": [1.0]}]')
    assert main(["decide-nbest", "--dev", str(bad), "--out", str(tmp_path / "p")]) == 1
    assert "scores must be 2 finite numbers" in capsys.readouterr().err


def test_normalised_for_scoring_but_written_as_recognised(tmp_path):
    dev = _write(tmp_path / "dev.tsv", [("d1", 1, "The Cat", 1, 1)])
    (tmp_path / "dev.txt").write_text("d1 the cat\n")
    assert main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "dev.txt"), "--normalize", "lower",
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "dev" / "text").read_text() == "d1 The Cat\n"
