"""asr-lm-quant report: results table, JSON and plots from the files a recipe's stages leave, where its layout
says (the mini recipe's layout here, and another one)."""

import json
from pathlib import Path

import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.report.build import build_report
from asr_lm_quant.report.layout import load_layout

PNG = b"\x89PNG\r\n\x1a\n"
MINI = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "conf" / "report_layout.json"


def _w(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)


def _tuned(dev_by_w, eval_by_w, choice):
    return {"chosen": {"weight": choice, "lmwt": 11.0, "wip": 0.5}, "dev_wer": dev_by_w[choice],
            "eval_wer": eval_by_w[choice], "dev_wer_by_weight": dev_by_w, "eval_wer_by_weight": eval_by_w,
            "eval_ref_words": 1500}


def make_exp(root: Path) -> Path:
    exp = root / "exp"
    _w(exp / "ngram" / "ppl_valid.json", {"ppl": 310.5})
    _w(exp / "ngram" / "ppl_test.json", {"ppl": 290.25})
    _w(exp / "ngram" / "3gram.arpa", "\\data\\\n" + "x" * 2_000_000)
    _w(exp / "ngram" / "first_pass.json", {"chosen": {"weight": "none", "lmwt": 14.0, "wip": 0.0},
                                          "dev_wer": 17.1, "eval_wer": 16.4})
    _w(exp / "ngram" / "decode_test_eval" / "oracle.json",
       {"n": 20, "utterances": 150, "ref_words": 1500, "one_best_wer": 17.0, "nbest_oracle_wer": 9.5,
        "lattice_oracle_wer": 4.25})
    _w(exp / "ngram" / "decode_test" / "scoring_kaldi" / "sweep.json",
       {"settings": [{"lmwt": l, "wip": w, "wer": 20 - l / 2 + float(w)} for l in range(7, 18) for w in ("0.0", "0.5")],
        "best": {}})
    for m in ("lm", "lm_deep"):
        _w(exp / m / "config.json", {})
        _w(exp / m / "ppl_test.json", {"ppl": 150.0 if m == "lm" else 120.0})
    _w(exp / "quant" / "results.json", [
        {"name": "fp", "model": "base", "method": "fp", "bits": 32, "avg_bits": 32.0, "size_mb": 5.2,
         "compression": 1.0, "test_ppl": 151.0},
        {"name": "fp_deep", "model": "deep", "method": "fp", "bits": 32, "avg_bits": 32.0, "size_mb": 7.9,
         "compression": 1.0, "test_ppl": 121.0},
        {"name": "ptq-4", "model": "base", "method": "ptq", "bits": 4, "avg_bits": 4.0, "size_mb": 0.7,
         "compression": 7.4, "test_ppl": 160.0},
        {"name": "hessian-16x", "model": "base", "method": "hessian", "bits": None, "avg_bits": 2.0,
         "size_mb": 0.36, "compression": 14.5, "test_ppl": 158.0, "sensitivity_seconds": 41.25,
         "plan_bits": {"emb": 4, "layers.0.attn": 2, "layers.0.ff1": 1, "layers.0.ff2": 2}},
        {"name": "kl-16x", "model": "base", "method": "kl", "bits": None, "avg_bits": 2.0,
         "size_mb": 0.36, "compression": 14.5, "test_ppl": 156.5, "sensitivity_seconds": 73.5,
         "plan_bits": {"emb": 2, "layers.0.attn": 4, "layers.0.ff1": 2, "layers.0.ff2": 1}}])
    for name, nb, lat in (("lm", 14.2, 13.9), ("lm_deep", 13.5, 13.1), ("q_hessian-16x", 14.4, 14.0)):
        _w(exp / "rescore" / name / "nbest.json", _tuned({"0.5": nb + 0.5, "0.7": nb}, {"0.5": nb + 0.2, "0.7": nb}, "0.7"))
        _w(exp / "rescore" / name / "lattice.json", _tuned({"0.5": lat, "0.7": lat + 1}, {"0.5": lat, "0.7": lat + 1}, "0.5"))
    return exp


def test_report_table_json_and_plots(tmp_path):
    exp = make_exp(tmp_path)
    res = build_report(exp, MINI, elapsed_s=1800)
    md = (exp / "results.md").read_text()
    assert "eval half" in md and "dev half" in md and "30 min" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| sensitivity s |" in md
    assert "| - | - | 290.2 | 16.40 | - | - | 9.50 (20-best), 4.25 (lattice) |" in rows["3-gram (first pass)"]
    assert "| lm | base | fp | 32.00 | 5.200 | 1.0x | - | 150.0 | 16.40 | 14.20 | 13.90 |" in rows["lm"]
    assert "| q_hessian-16x | base | hessian | 2.00 | 0.360 | 14.5x | 41.2 | 158.0 | 16.40 | 14.40 | 14.00 |" in \
        rows["q_hessian-16x"]
    assert "| q_kl-16x | base | kl | 2.00 | 0.360 | 14.5x | 73.5 | 156.5 | 16.40 | - | - |" in rows["q_kl-16x"]
    assert "| q_ptq-4 | base | ptq | 4.00 | 0.700 | 7.4x | - | 160.0 | 16.40 | - | - |" in rows["q_ptq-4"]
    assert "LMWT 14" in md
    saved = json.loads((exp / "results.json").read_text())
    assert saved["first_pass"]["wer_first_pass"] == 16.4
    by_name = {s["name"]: s for s in saved["systems"]}
    assert set(by_name) == {"lm", "lm_deep", "q_ptq-4", "q_hessian-16x", "q_kl-16x"}
    assert by_name["q_kl-16x"]["sensitivity_seconds"] == 73.5
    assert by_name["lm_deep"]["wer_lattice"] == 13.1 and by_name["lm_deep"]["size_mb"] == 7.9
    assert "significance" not in saved and "Significance" not in md  # an older run: no per-utterance errors
    assert sorted(res["plots"]) == ["plots/bits_per_layer.png", "plots/first_pass_lmwt.png",
                                   "plots/size_vs_wer_ppl.png", "plots/wer_vs_lm_weight.png"]
    for p in res["plots"]:
        assert (exp / p).read_bytes()[:8] == PNG
        assert f"]({p})" in md


def test_report_wer_is_kaldis_not_a_rounding_of_a_rounding(tmp_path):
    """688 errors in 4065 words are 16.92497%: the tuning JSON keeps 16.925, which formats as 16.93; the table
    says 16.92, as Kaldi's %WER line does."""
    exp = make_exp(tmp_path)
    t = json.loads((exp / "rescore" / "lm" / "lattice.json").read_text())
    t.update(eval_wer=16.925, eval_wer_line="%WER 16.92 [ 688 / 4065, 133 ins, 49 del, 506 sub ]")
    _w(exp / "rescore" / "lm" / "lattice.json", t)
    res = build_report(exp, MINI)
    assert {s["name"]: s for s in res["systems"]}["lm"]["wer_lattice"] == pytest.approx(100 * 688 / 4065)
    row = next(line for line in (exp / "results.md").read_text().splitlines() if line.startswith("| lm |"))
    assert "| 14.20 | 16.92 |" in row


def _per_utt(path: Path, wrong):
    """A Kaldi per_utt of 40 five-word utterances; ``wrong(i)`` says whether utterance i has one substitution."""
    from asr_lm_quant.scoring.details import per_utt_text
    from asr_lm_quant.scoring.wer import score_texts
    ref = {f"u{i:02d}": [f"w{j}" for j in range(5)] for i in range(40)}
    hyp = {k: (["x"] + r[1:]) if wrong(i) else r for i, (k, r) in enumerate(ref.items())}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(per_utt_text(score_texts(ref, hyp, align=True)))


def add_per_utt(exp: Path):
    """Eval-half per-utterance errors as tune.py keeps them: first pass 10% WER, lm 4%, q_hessian-16x 4.5%."""
    fp = json.loads((exp / "ngram" / "first_pass.json").read_text())
    fp["eval_per_utt"] = "first_pass.eval_per_utt"
    _w(exp / "ngram" / "first_pass.json", fp)
    _per_utt(exp / "ngram" / "first_pass.eval_per_utt", lambda i: i % 2 == 0)
    for name, wrong in (("lm", lambda i: i % 5 == 0), ("q_hessian-16x", lambda i: i % 5 == 0 or i == 1)):
        t = json.loads((exp / "rescore" / name / "nbest.json").read_text())
        t["eval_per_utt"] = "nbest.eval_per_utt"
        _w(exp / "rescore" / name / "nbest.json", t)
        _per_utt(exp / "rescore" / name / "nbest.eval_per_utt", wrong)


def test_report_significance_table(tmp_path):
    exp = make_exp(tmp_path)
    add_per_utt(exp)
    res = build_report(exp, MINI)
    md = (exp / "results.md").read_text()
    sig_rows = {tuple(c.strip() for c in line.split("|")[1:3]): [c.strip() for c in line.split("|")[3:-1]]
                for line in md.split("Significance on the eval half")[1].splitlines() if line.startswith("| ")}
    assert set(sig_rows) == {("system", "method"), ("lm", "nbest"), ("q_hessian-16x", "nbest")}
    lm = sig_rows[("lm", "nbest")]
    # 24 utterances with an error: 16 fixed by lm, 4 broken, 4 wrong in both (d = -1 x16, +1 x4, 0 x4):
    # mean -0.5, variance 14 / 23, z = -0.5 / sqrt(14 / 23 / 24) = -3.139, p = 0.0017.
    assert lm[:3] == ["4.00", "-6.00 **", "0.002"] and lm[4:] == ["-", "-", "-"]
    q = sig_rows[("q_hessian-16x", "nbest")]
    assert q[0] == "4.50" and q[1].startswith("-5.50 **")
    assert q[4] == "+0.50 ~" and q[5] == "0.317"  # one utterance worse than lm: z = 1, not significant
    saved = json.loads((exp / "results.json").read_text())["significance"]
    assert saved["samples"] == 10000 and saved["seed"] == 0 and saved["notes"] == []
    pairs = {(c["system"], c["baseline"]): c for c in saved["comparisons"]}
    assert set(pairs) == {("lm", "first_pass"), ("q_hessian-16x", "first_pass"), ("q_hessian-16x", "full_precision")}
    assert pairs[("q_hessian-16x", "full_precision")]["baseline_system"] == "lm"
    c = pairs[("lm", "first_pass")]
    assert c["mapsswe"]["segments"] == 24 and c["mapsswe"]["mean"] == pytest.approx(-0.5)
    assert c["bootstrap"]["ci_high"] < 0 and c["bootstrap"]["p_improvement"] > 0.99
    assert res["significance"]["comparisons"][0]["system"] == "lm"


def test_report_compares_quantized_systems_at_full_precision_settings(tmp_path):
    exp = make_exp(tmp_path)
    add_per_utt(exp)
    # At lm's own settings q_hessian-16x makes lm's errors and three more (at its own: one more).
    t = json.loads((exp / "rescore" / "q_hessian-16x" / "nbest.json").read_text())
    t["at_reference"] = {"chosen": {"weight": "0.7", "lmwt": 11.0, "wip": 0.5}, "eval_wer": 5.5,
                         "eval_per_utt": "nbest.eval_per_utt_at_reference"}
    _w(exp / "rescore" / "q_hessian-16x" / "nbest.json", t)
    _per_utt(exp / "rescore" / "q_hessian-16x" / "nbest.eval_per_utt_at_reference", lambda i: i % 5 == 0 or i in (1, 2, 3))
    res = build_report(exp, MINI)
    shared = [c for c in res["significance"]["comparisons"] if c["baseline"] == "full_precision_setting"]
    assert len(shared) == 1 and shared[0]["system"] == "q_hessian-16x" and shared[0]["baseline_system"] == "lm"
    assert shared[0]["wer_a"] == pytest.approx(4.0) and shared[0]["wer_b"] == pytest.approx(5.5)
    assert shared[0]["mapsswe"]["segments"] == 11  # the 8 utterances both get wrong and the 3 it adds
    md = (exp / "results.md").read_text()
    table = md.split("The same comparison with full precision at shared settings")[1]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| q_")]
    assert rows == [["q_hessian-16x", "nbest", "lm 4.00", "5.50", "+1.50 ~",
                     f"{shared[0]['mapsswe']['p']:.3f}", rows[0][6]]]
    # Settings that are no longer the full-precision LM's choice are not compared.
    stale = dict(t, at_reference=dict(t["at_reference"], chosen={"weight": "0.5", "lmwt": 11.0, "wip": 0.5}))
    _w(exp / "rescore" / "q_hessian-16x" / "nbest.json", stale)
    res = build_report(exp, MINI)
    assert not [c for c in res["significance"]["comparisons"] if c["baseline"] == "full_precision_setting"]
    assert any("now chooses" in n and "re-run the tuning" in n for n in res["significance"]["notes"])
    _w(exp / "rescore" / "q_hessian-16x" / "nbest.json", t)
    # A system without at_reference (and the first pass, full precision) is not in that table.
    (exp / "rescore" / "q_hessian-16x" / "nbest.eval_per_utt_at_reference").unlink()
    res = build_report(exp, MINI)
    assert not [c for c in res["significance"]["comparisons"] if c["baseline"] == "full_precision_setting"]
    assert any("q_hessian-16x nbest at full-precision settings" in n and "missing" in n
               for n in res["significance"]["notes"])
    assert "at shared settings" not in (exp / "results.md").read_text()


def test_report_compares_a_compressed_larger_lm_with_the_smaller_lm_of_its_size(tmp_path):
    """The deeper LM's systems stored in at most the base LM's full-precision size (5.2 MB) are compared with
    lm; a bigger one (5.5 MB) and the base LM's own systems are not."""
    exp = make_exp(tmp_path)
    add_per_utt(exp)
    rows = json.loads((exp / "quant" / "results.json").read_text())
    rows += [{"name": "deep-at-base", "model": "deep", "method": "hessian", "avg_bits": 16.0, "size_mb": 5.2,
              "compression": 1.5, "test_ppl": 122.0},
             {"name": "deep-big", "model": "deep", "method": "ptq", "bits": 8, "avg_bits": 8.0, "size_mb": 5.5,
              "compression": 1.4, "test_ppl": 121.5}]
    _w(exp / "quant" / "results.json", rows)
    for name in ("q_deep-at-base", "q_deep-big"):
        t = json.loads((exp / "rescore" / "lm" / "nbest.json").read_text())
        _w(exp / "rescore" / name / "nbest.json", t)
        # lm's errors except on utterances 0, 5, ..., 25: six fewer errors of 200 words
        _per_utt(exp / "rescore" / name / "nbest.eval_per_utt", lambda i: i % 5 == 0 and i > 25)
    res = build_report(exp, MINI)
    matched = [c for c in res["significance"]["comparisons"] if c["baseline"] == "smaller_lm"]
    assert [(c["system"], c["method"], c["baseline_system"]) for c in matched] == [("q_deep-at-base", "nbest", "lm")]
    c = matched[0]
    assert c["size_mb"] == 5.2 and c["baseline_size_mb"] == 5.2
    assert c["wer_a"] == pytest.approx(4.0) and c["wer_b"] == pytest.approx(1.0) and c["diff"] == pytest.approx(-3.0)
    assert c["mapsswe"]["segments"] == 8 and c["mapsswe"]["p"] < 0.05  # the 8 utterances lm gets wrong
    md = (exp / "results.md").read_text()
    table = md.split("A larger LM compressed to at most the size of a smaller LM")[1]
    rows = [[x.strip() for x in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| q_")]
    assert len(rows) == 1 and rows[0][:7] == ["q_deep-at-base", "nbest", "5.200", "lm (5.200)", "1.00", "4.00",
                                              f"-3.00 {'**' if c['mapsswe']['p'] < 0.01 else '*'}"]
    # Without the deeper LM's full-precision row there is no "larger" model to speak of.
    quant = json.loads((exp / "quant" / "results.json").read_text())
    _w(exp / "quant" / "results.json", [r for r in quant if r["name"] != "fp_deep"])
    (exp / "lm_deep" / "config.json").unlink()
    (exp / "lm_deep" / "ppl_test.json").unlink()
    (exp / "lm_deep").rmdir()
    res = build_report(exp, MINI)
    assert not [c for c in res["significance"]["comparisons"] if c["baseline"] == "smaller_lm"]
    assert "A larger LM compressed" not in (exp / "results.md").read_text()


def test_report_significance_with_missing_or_mismatched_files(tmp_path):
    exp = make_exp(tmp_path)
    add_per_utt(exp)
    (exp / "rescore" / "lm" / "nbest.eval_per_utt").unlink()
    lines = (exp / "rescore" / "q_hessian-16x" / "nbest.eval_per_utt").read_text().splitlines()
    (exp / "rescore" / "q_hessian-16x" / "nbest.eval_per_utt").write_text(
        "\n".join(l for l in lines if not l.startswith("u07 ")) + "\n")
    res = build_report(exp, MINI)
    notes = res["significance"]["notes"]
    assert any("lm/nbest.eval_per_utt: missing" in n for n in notes)
    assert any("key 'u07': utterance is missing" in n for n in notes)
    assert res["significance"]["comparisons"] == []
    assert "Significance on the eval half" not in (exp / "results.md").read_text()


def test_report_needs_the_first_pass(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    with pytest.raises(InputError, match="first_pass.json: missing: run the recipe's first-pass stage"):
        build_report(exp, MINI)
    assert not (exp / "results.md").exists()


def test_report_bad_json_names_file_and_line(tmp_path):
    exp = make_exp(tmp_path)
    (exp / "quant" / "results.json").write_text('[\n{"name": "x",\n oops}\n]')
    with pytest.raises(InputError, match=r"quant/results.json, line 3"):
        build_report(exp, MINI)


def test_report_cli(tmp_path, capsys):
    from asr_lm_quant.cli import main
    exp = make_exp(tmp_path)
    out = tmp_path / "out"
    assert main(["report", "--exp", str(exp), "--layout", str(MINI), "--out", str(out)]) == 0
    assert (out / "results.md").exists() and (out / "plots" / "wer_vs_lm_weight.png").exists()
    assert main(["report", "--exp", str(tmp_path / "none"), "--layout", str(MINI)]) == 1
    err = capsys.readouterr().err
    assert "asr-lm-quant report: error:" in err and "first_pass.json" in err


def test_bits_per_layer_plot_draws_every_mixed_precision_method(tmp_path):
    from asr_lm_quant.report.plots import plot_bits_per_layer
    bits = {"emb": 2, "layers.0.attn": 4}
    for method in ("hessian", "kl", "search"):
        path = tmp_path / f"{method}.png"
        assert plot_bits_per_layer([{"name": method, "method": method, "plan_bits": bits, "avg_bits": 2.5}], path)
        assert path.read_bytes()[:8] == PNG
    assert not plot_bits_per_layer([{"name": "p", "method": "ptq", "plan_bits": bits}], tmp_path / "no.png")


def test_report_reads_where_another_recipes_layout_says(tmp_path):
    """A recipe with other directory and system names: the report follows its layout, and names no other."""
    exp = make_exp(tmp_path)
    (exp / "ngram").rename(exp / "bigram_lm")
    (exp / "lm").rename(exp / "tfm")
    (exp / "rescore").rename(exp / "rescored")
    (exp / "rescored" / "lm").rename(exp / "rescored" / "tfm")
    (exp / "quant").rename(exp / "q")
    layout = json.loads(MINI.read_text())
    layout.update(title="a two-LM recipe", full_precision={"tfm": "base", "lm_deep": "deep"},
                  quant_results="q/results.json", rescore="rescored")
    layout["first_pass"].update(dir="bigram_lm", name="2gram", method="kn2", label="2-gram", model="KN 2-gram")
    add_per_utt_at(exp, "bigram_lm", "rescored", {"tfm": lambda i: i % 5 == 0})
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout))
    res = build_report(exp, path)
    md = (exp / "results.md").read_text()
    assert md.startswith("Results of a two-LM recipe (")
    assert "| 2-gram (first pass) | KN 2-gram | - | - | 2.0 (ARPA) |" in md
    assert res["first_pass"]["name"] == "2gram" and res["first_pass"]["method"] == "kn2"
    by_name = {s["name"]: s for s in res["systems"]}
    assert by_name["tfm"]["wer_nbest"] == 14.2 and by_name["tfm"]["test_ppl"] == 150.0
    assert "lm" not in by_name
    assert "full precision is tfm for base-model systems, lm_deep for deep ones." in md
    pairs = {(c["system"], c["baseline"]) for c in res["significance"]["comparisons"]}
    assert pairs == {("tfm", "first_pass")}
    # With the mini recipe's layout nothing of this experiment is found.
    with pytest.raises(InputError, match=r"ngram/first_pass.json: missing"):
        build_report(exp, MINI)


def add_per_utt_at(exp: Path, first_dir: str, rescore_dir: str, systems: dict):
    fp = json.loads((exp / first_dir / "first_pass.json").read_text())
    fp["eval_per_utt"] = "first_pass.eval_per_utt"
    _w(exp / first_dir / "first_pass.json", fp)
    _per_utt(exp / first_dir / "first_pass.eval_per_utt", lambda i: i % 2 == 0)
    for name, wrong in systems.items():
        t = json.loads((exp / rescore_dir / name / "nbest.json").read_text())
        t["eval_per_utt"] = "nbest.eval_per_utt"
        _w(exp / rescore_dir / name / "nbest.json", t)
        _per_utt(exp / rescore_dir / name / "nbest.eval_per_utt", wrong)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("rescore"), r"key 'rescore': missing"),
    (lambda d: d["first_pass"].pop("sweep"), r"key 'first_pass.sweep': missing"),
    (lambda d: d.update(extra=1), r"key 'extra': unknown entry"),
    (lambda d: d.update(full_precision={"lm": 3}), r"key 'full_precision': must be an object"),
    (lambda d: d["first_pass"].update(dir=""), r"key 'first_pass.dir': must be a non-empty string"),
])
def test_a_bad_layout_is_named(tmp_path, edit, message):
    d = json.loads(MINI.read_text())
    edit(d)
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(d))
    with pytest.raises(InputError, match=rf"layout.json, {message}"):
        load_layout(path)


def test_the_report_command_needs_a_layout(tmp_path, capsys):
    from asr_lm_quant.cli import main
    exp = make_exp(tmp_path)
    with pytest.raises(SystemExit):
        main(["report", "--exp", str(exp)])
    assert "--layout" in capsys.readouterr().err
    assert main(["report", "--exp", str(exp), "--layout", str(tmp_path / "nope.json")]) == 1
    assert "nope.json: report layout does not exist" in capsys.readouterr().err
