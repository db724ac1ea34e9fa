"""Every kind of old LM (ARPA, G.fst, G.carpa, lang dir with either) through every command that takes one, with
--json: the summary is written, names the LM and the cost it removed, and the costs agree where they must."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from conftest import REPO, TINY as tiny

_spec = importlib.util.spec_from_file_location("carpa_layout", REPO / "tests/fixtures/kaldi/carpa_layout.py")
carpa_layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carpa_layout)

KINDS = ("arpa", "fst", "carpa", "lang_fst", "lang_carpa")
SEMANTICS = {"arpa": "arpa", "fst": "min-over-paths", "carpa": "arpa", "lang_fst": "min-over-paths",
             "lang_carpa": "arpa"}


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    kaldilm = pytest.importorskip("kaldilm", reason="kaldilm (Kaldi's arpa2fst) builds the G.fst")
    t = tiny.build(tmp_path_factory.mktemp("kinds"))
    root = t["root"]
    syms = t["symbols"]
    lms = {"arpa": t["arpa"]}
    for name in ("fst", "carpa", "lang_fst", "lang_carpa"):
        (root / name).mkdir()
        shutil.copy(t["words"], root / name / "words.txt")
    for name in ("fst", "lang_fst", "lang_carpa"):
        kaldilm.arpa2fst(str(t["arpa"]), str(root / name / "G.fst"), disambig_symbol="#0",
                         read_symbol_table=str(t["words"]))
    order, ngrams = carpa_layout.parse_arpa(t["arpa"].read_text(), syms.word_to_id)
    carpa = carpa_layout.build_carpa(order, ngrams, bos=syms.id("<s>"), eos=syms.id("</s>"))
    for name in ("carpa", "lang_carpa"):
        (root / name / "G.carpa").write_bytes(carpa)
    lms.update(fst=root / "fst" / "G.fst", carpa=root / "carpa" / "G.carpa", lang_fst=root / "lang_fst",
               lang_carpa=root / "lang_carpa")
    t["lms"] = lms
    return t


def _summary(path):
    s = json.loads(Path(path).read_text())
    assert isinstance(s["ngram_oov" if "ngram_oov" in s else "utterances"], int)
    return s


@pytest.mark.parametrize("kind", KINDS)
def test_rescore_nbest_and_lattice_with_json(kinds, kind, tmp_path, capsys):
    lm = kinds["lms"][kind]
    common = ["--old-lm", str(lm), "--lm-dir", str(kinds["lm"]), "--words", str(kinds["words"]), "--weight", "0.5",
              "--lattices", f"ark:gunzip -c {kinds['decode']}/lat.1.gz|"]
    out = tmp_path / "n.tsv"
    assert main(["rescore-nbest", *common, "--n", "4", "--out-nbest", str(out), "--json",
                 str(tmp_path / "n.json")]) == 0
    s = _summary(tmp_path / "n.json")
    assert s["old_lm"]["semantics"] == SEMANTICS[kind] and s["hypotheses"] > 3 and out.exists()
    assert s["old_lm"]["kind"] == ("arpa" if kind == "arpa" else "carpa" if "carpa" in kind else "fst")
    assert main(["rescore-lattice", *common, "--out-lattices", f"ark:{tmp_path}/l.ark", "--check", "--json",
                 str(tmp_path / "l.json")]) == 0
    s = _summary(tmp_path / "l.json")
    assert s["old_lm"]["semantics"] == SEMANTICS[kind] and s["utterances"] == 3 and "check" in s
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", KINDS)
def test_old_lm_command_every_kind(kinds, kind, capsys):
    from asr_lm_quant.ngram.arpa import ArpaLM
    lm = kinds["lms"][kind]
    assert main(["old-lm", str(lm), "--open", "--text", str(tiny.CORPUS)]) == 0
    out = capsys.readouterr().out.splitlines()
    head = json.loads(out[0])
    assert head["semantics"] == SEMANTICS[kind]
    costs = [float(line.split("\t")[0]) for line in out[1:]]
    assert len(costs) == len(tiny.CORPUS.read_text().splitlines())
    if SEMANTICS[kind] == "arpa":  # the ARPA file's costs
        ref = ArpaLM(kinds["arpa"])
        assert costs == pytest.approx([ref.sentence_cost(x) for x in tiny.CORPUS.read_text().splitlines()],
                                      abs=1e-3)
    assert main(["old-lm", str(lm), "--use-phi", "true", "--text", str(tiny.CORPUS)]) == 0
    phi = [float(line.split("\t")[0]) for line in capsys.readouterr().out.splitlines()[1:]]
    ref = ArpaLM(kinds["arpa"])
    assert phi == pytest.approx([ref.sentence_cost(x) for x in tiny.CORPUS.read_text().splitlines()], abs=1e-3)
    assert all(a <= b + 1e-4 for a, b in zip(costs, phi))  # min over paths is at most the walk


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("step", ["lmrescore_nbest.sh", "lmrescore_lattice.sh"])
def test_step_scripts_every_kind_with_json(kinds, step, tmp_path):
    for kind in KINDS:
        out = tmp_path / f"{kind}_out"
        res = subprocess.run([str(REPO / "steps" / step), "--skip-scoring", "true", "--words", str(kinds["words"]),
                              str(kinds["lms"][kind]), str(kinds["lm"]), str(kinds["data"]), str(kinds["decode"]),
                              str(out)], capture_output=True, text=True, env=_env(), cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f'"semantics": "{SEMANTICS[kind]}"' in res.stdout
        for j in (1, 2):
            s = _summary(out / "log" / f"rescore.{j}.json")
            assert s["old_lm"]["semantics"] == SEMANTICS[kind] and s["utterances"] == 3
            assert (out / f"lat.{j}.gz").exists()


@pytest.mark.slow
def test_lattice_step_says_on_stderr_when_pruning_removed_the_best_path(kinds, tmp_path):
    k = tiny.build_kaldi_decode_dir(kinds, seed=3)
    out = tmp_path / "out"
    res = subprocess.run([str(REPO / "steps" / "lmrescore_lattice.sh"), "--skip-scoring", "true", "--beam", "0.01",
                          "--acwt", "0.5", "--words", str(k["words"]), str(kinds["arpa"]), str(kinds["lm"]),
                          str(k["data"]), str(k["decode"]), str(out)],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    summaries = [json.loads(p.read_text())["check"] for p in sorted((out / "log").glob("rescore.*.json"))]
    pruned = sum(c["best_path_pruned_away"] for c in summaries)
    compared = sum(c["compared"] for c in summaries)
    assert pruned > 0  # a beam this narrow removes some LMWT's best path
    assert f"--check: at {pruned} of {compared} (utterance, LMWT) pairs pruning (--beam 0.01)" in res.stderr
