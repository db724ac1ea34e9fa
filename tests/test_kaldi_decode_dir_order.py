"""End to end on a decode dir in Kaldi's real shape whose lattices are not numbered in topological order.

The three step scripts a Kaldi user runs (score_kaldi.sh, lmrescore_lattice.sh, lmrescore_nbest.sh) and the
invariant that makes lattice rescoring trustworthy: at interpolation weight 0 it reproduces the first pass,
the same WER at every LM weight and insertion penalty.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant.kaldi.archive import read_lattice_dict
from asr_lm_quant.kaldi.lattice import Lattice

REPO = Path(__file__).resolve().parents[1]
from conftest import TINY as tiny  # noqa: E402

SCORING = "--min-lmwt 7 --max-lmwt 17 --word-ins-penalty 0.0,0.5,1.0"


@pytest.fixture(scope="module")
def kd(tmp_path_factory):
    t = tiny.build(tmp_path_factory.mktemp("kaldi_dir"))
    t.update(tiny.build_kaldi_decode_dir(t))
    return t


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def _run(args, cwd):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env(), cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def _wers(decode):
    return {p.name: [x for x in p.read_text().splitlines() if x.startswith("%WER")][0]
            for p in sorted(decode.glob("wer_*_*"))}


def test_lattices_are_kaldi_shaped_and_not_topological(kd):
    lats = read_lattice_dict(f"ark:gunzip -c {kd['decode']}/lat.*.gz|")  # a glob in the pipe, as Kaldi's
    assert sorted(lats) == kd["utts"]
    not_top = [k for k, lat in lats.items() if np.any(lat.dst <= lat.src)]
    assert len(not_top) >= len(lats) - 1 and all(isinstance(x, Lattice) and x.compact for x in lats.values())
    assert sum(lat.start != 0 for lat in lats.values()) >= len(lats) - 2


@pytest.mark.slow
def test_weight_zero_lattice_rescoring_reproduces_the_first_pass(kd, tmp_path):
    first = kd["decode"]
    _run([REPO / "steps/score_kaldi.sh", *SCORING.split(), kd["data"], kd["graph"], first], tmp_path)
    before = _wers(first)
    assert len(before) == 33
    first_best = float((first / "scoring_kaldi/best_wer").read_text().split()[1])
    assert 2.0 < first_best < 40.0  # the first pass makes some errors, not nonsense
    for beam, name in ((1000.0, "wide"), (5.0, "default")):
        out = tmp_path / f"decode_lat0_{name}"
        _run([REPO / "steps/lmrescore_lattice.sh", "--weight", "0.0", "--beam", beam, "--scoring-opts", SCORING,
              kd["arpa"], kd["lm"], kd["data"], first, out], tmp_path)
        summary = [json.loads(p.read_text()) for p in sorted((out / "log").glob("rescore.*.json"))]
        check = [s["check"] for s in summary]
        assert sum(c["compared"] for c in check) == len(kd["utts"]) * 11
        if name == "wide":
            # Nothing pruned: the same WER at every LM weight and insertion penalty, line for line.
            assert _wers(out) == before
            assert sum(c["best_path_pruned_away"] for c in check) == 0
        # The rescored lattices keep Kaldi's names and order, and hold the first pass's words.
        for j in range(1, 5):
            assert list(read_lattice_dict(f"ark:gunzip -c {out}/lat.{j}.gz|")) == \
                list(read_lattice_dict(f"ark:gunzip -c {first}/lat.{j}.gz|"))
    # A real weight rescored with the check on.
    out = tmp_path / "decode_lat08"
    _run([REPO / "steps/lmrescore_lattice.sh", "--weight", "0.8", "--scoring-opts", SCORING,
          kd["arpa"], kd["lm"], kd["data"], first, out], tmp_path)
    assert len(_wers(out)) == 33


@pytest.mark.slow
def test_weight_zero_nbest_rescoring_reproduces_the_first_pass_at_its_acoustic_scale(kd, tmp_path):
    first = kd["decode"]
    _run([REPO / "steps/score_kaldi.sh", "--min-lmwt", "10", "--max-lmwt", "10", kd["data"], kd["graph"], first],
         tmp_path)
    out = tmp_path / "decode_nbest0"
    _run([REPO / "steps/lmrescore_nbest.sh", "--N", "10", "--weight", "0.0", "--acwt", "0.1",
          "--scoring-opts", "--min-lmwt 10 --max-lmwt 10", kd["arpa"], kd["lm"], kd["data"], first, out], tmp_path)
    # At LMWT 10 (= --acwt 0.1) the 1-best of the N-best is the first pass's 1-best.
    got, ref = _wers(out), _wers(first)
    assert sorted(got) == ["wer_10_0.0", "wer_10_0.5", "wer_10_1.0"]
    assert got == {k: ref[k] for k in got}


def test_check_catches_a_rescorer_that_scrambles_words(kd, monkeypatch):
    from asr_lm_quant.ngram import ArpaLM
    from asr_lm_quant.rescore import lattice as rl
    from asr_lm_quant.rescore.nnscore import NNScorer

    real = rl.expand_unique_histories

    def scrambled(lat, *a, **k):
        out = real(lat, *a, **k)
        perm = np.random.default_rng(0).permutation(out.num_arcs)
        return out.replace(ilabel=out.ilabel[perm], olabel=out.olabel[perm])
    kw = dict(scorer=NNScorer(kd["model"], kd["vocab"]), ngram_lm=ArpaLM(kd["arpa"]), symbols=kd["symbols"],
              weights=[0.5], lattices=f"ark:gunzip -c {kd['decode']}/lat.1.gz|", out_lattices={}, check=True)
    summary = rl.rescore_lattice_job(**kw)
    assert summary["check"]["compared"] == 4 * 11
    monkeypatch.setattr(rl, "expand_unique_histories", scrambled)
    with pytest.raises(rl.CheckFailed, match="self-check failed"):
        rl.rescore_lattice_job(**kw)
