"""Kaldi's side of rescoring: a lang dir (G.fst / G.carpa) as the old LM in the step scripts, Kaldi's argument
order and scoring options, and lattice-to-nbest keeping repeated word sequences as Kaldi does."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.archive import write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.kaldi.symbols import SymbolTable
from conftest import REPO, TINY as tiny


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def _run(args, cwd, ok=True):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env(), cwd=cwd)
    if ok:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture(scope="module")
def kd(tmp_path_factory):
    kaldilm = pytest.importorskip("kaldilm", reason="kaldilm (Kaldi's arpa2fst) builds the lang dir's G.fst")
    t = tiny.build(tmp_path_factory.mktemp("lang_steps"))
    t.update(tiny.build_kaldi_decode_dir(t))
    lang = t["root"] / "data" / "lang_test_tg"
    lang.mkdir(parents=True)
    shutil.copy(t["words"], lang / "words.txt")
    kaldilm.arpa2fst(str(t["arpa"]), str(lang / "G.fst"), disambig_symbol="#0",
                     read_symbol_table=str(lang / "words.txt"))
    t["lang"] = lang
    return t


def _nbest_rows(decode):
    rows = {}
    for p in sorted(decode.glob("nbest.*.tsv")):
        for line in p.read_text().splitlines()[1:]:
            f = line.split("\t")
            rows[(f[0], f[1])] = (f[2], float(f[3]), float(f[4]))
    return rows


@pytest.mark.slow
def test_nbest_step_in_kaldis_order_with_a_lang_dir_matches_the_arpa_run(kd, tmp_path):
    opts = ["--N", "5", "--weight", "0.5", "--min-lmwt", "10", "--max-lmwt", "11", "--word-ins-penalty", "0.5"]
    kaldi_out, arpa_out = tmp_path / "decode_kaldi_order", tmp_path / "decode_arpa"
    # Kaldi's steps/pytorchnn order: <old-lang-dir> <nn-model-dir> <vocab> <data> <in> <out>; --inv-acwt 10.
    # --use-phi true: the G.fst's ARPA back-off walk, which is the ARPA file's cost.
    res = _run([REPO / "steps/lmrescore_nbest.sh", *opts, "--inv-acwt", "10", "--use-phi", "true", kd["lang"],
                kd["lm"], kd["lang"] / "words.txt", kd["data"], kd["decode"], kaldi_out], tmp_path)
    assert '"kind": "fst"' in res.stdout and "lang_test_tg/G.fst" in res.stdout
    assert '"semantics": "arpa"' in res.stdout
    _run([REPO / "steps/lmrescore_nbest.sh", *opts, "--acwt", "0.1", "--words", kd["words"], kd["arpa"], kd["lm"],
          kd["data"], kd["decode"], arpa_out], tmp_path)
    # Kaldi's scoring options reached the scoring: LMWT 10..11, penalty 0.5 only.
    for out in (kaldi_out, arpa_out):
        assert sorted(p.name for p in out.glob("wer_*")) == ["wer_10_0.5", "wer_11_0.5"]
    a, b = _nbest_rows(arpa_out), _nbest_rows(kaldi_out)
    assert a.keys() == b.keys() and len(a) >= 40
    for k in a:
        assert a[k][0] == b[k][0] and a[k][1:] == pytest.approx(b[k][1:], abs=1e-3)
    for name in ("wer_10_0.5", "wer_11_0.5"):
        wer = [[x for x in (out / name).read_text().splitlines() if x.startswith("%WER")]
               for out in (kaldi_out, arpa_out)]
        assert wer[0] == wer[1] and len(wer[0]) == 1


def test_step_argument_and_option_errors(kd, tmp_path):
    step = REPO / "steps/lmrescore_lattice.sh"
    base = [kd["lm"], kd["data"], kd["decode"]]

    def fails(args, message):
        out = tmp_path / "out"
        res = _run([step, *args[:-1], out] if args[-1] is None else [step, *args], tmp_path, ok=False)
        assert res.returncode == 1 and message in res.stderr, res.stderr
        assert not (out / "log").exists() or not list((out / "log").iterdir())  # refused before any job

    fails(["--decode-mbr", "yes", kd["lang"], *base, None], "expected true or false for --decode-mbr, got 'yes'")
    fails([kd["lang"], kd["lang"], kd["data"], kd["decode"], None], "is a Kaldi lang dir (as the <new-lang-dir> of "
                                                                    "lmrescore_const_arpa.sh)")
    fails([kd["lang"], kd["lm"], tmp_path / "no_vocab.txt", kd["data"], kd["decode"], None],
          "no_vocab.txt (the <vocab> argument of Kaldi's order)")
    fails(["--inv-acwt", "0", kd["lang"], *base, None], "--inv-acwt must be a positive number")
    bad = tmp_path / "lang_bad"
    bad.mkdir()
    shutil.copy(kd["lang"] / "words.txt", bad / "words.txt")
    (bad / "G.carpa").write_bytes(b"\0B<ConstArpaLm> <LmInfo> \x04\x01")
    res = _run([REPO / "steps/lmrescore_nbest.sh", bad, *base, tmp_path / "out"], tmp_path, ok=False)
    assert res.returncode == 1 and "bad old LM" in res.stderr and "Traceback" not in res.stderr
    empty = tmp_path / "lang_empty"
    empty.mkdir()
    fails([empty, *base, None], "has neither G.carpa nor G.fst")
    res = _run([REPO / "steps/score_kaldi.sh", "--decode-mbr", "maybe", kd["data"], kd["graph"], kd["decode"]],
               tmp_path, ok=False)
    assert res.returncode == 1 and "expected true or false for --decode-mbr, got 'maybe'" in res.stderr


def test_lattice_to_nbest_keeps_repeated_word_sequences_as_kaldi(tmp_path):
    kaldifst = pytest.importorskip("kaldifst", reason="kaldifst runs Kaldi's own lattice-to-nbest")
    # A state-level lattice (transition-ids in, words out): "a b" by two state paths, and "b".
    arcs = [(0, 1, 11, 1, 1.0, 10.0), (0, 2, 12, 1, 1.5, 10.5), (1, 3, 13, 0, 0.5, 4.0), (2, 3, 14, 0, 0.25, 4.25),
            (3, 4, 15, 2, 0.75, 6.0), (0, 4, 16, 2, 2.0, 30.0)]
    lat = Lattice.from_arcs(arcs, {4: (0.5, 0.0)}, compact=False)
    write_lattices(f"ark:{tmp_path}/lat.ark", [("utt1", lat)])
    SymbolTable.from_words(["a", "b"]).save(tmp_path / "words.txt")
    for flag, name in ((["--keep-duplicates"], "dup.tsv"), ([], "uniq.tsv"), (["--kaldi-exact"], "exact.tsv")):
        assert main(["lattice-to-nbest", f"ark:{tmp_path}/lat.ark", "--n", "5", "--acoustic-scale", "0.1",
                     "--words", str(tmp_path / "words.txt"), "--nbest", str(tmp_path / name), *flag]) == 0

    def rows(name):
        return [(f[2], round(float(f[4]), 4), round(float(f[3]), 4))
                for f in (line.split("\t") for line in (tmp_path / name).read_text().splitlines()[1:])]

    ours = rows("dup.tsv")
    assert rows("exact.tsv") == ours
    assert [r[0] for r in ours] == ["a b", "a b", "b"] and [r[0] for r in rows("uniq.tsv")] == ["a b", "b"]
    # Kaldi's lattice-to-nbest (through kaldifst) on the same lattice lists the same paths, in the same order.
    k = kaldifst.Lattice()
    for _ in range(5):
        k.add_state()
    k.start = 0
    for s, d, il, ol, g, a in arcs:
        k.add_arc(s, kaldifst.LatticeArc(il, ol, kaldifst.LatticeWeight(g, a), d))
    k.set_final(4, kaldifst.LatticeWeight(0.5, 0.0))
    names = {1: "a", 2: "b"}
    theirs = []
    for path in kaldifst.lattice_to_nbest(k, acoustic_scale=0.1, n=5):
        ok, _, olabels, w = kaldifst.get_linear_symbol_sequence(path)
        # lattice_to_nbest returns the scaled weights: unscale the acoustic part as lattice-to-nbest writes it.
        theirs.append((" ".join(names[x] for x in olabels if x), round(w.value1, 4), round(w.value2 / 0.1, 4)))
    assert theirs == ours
