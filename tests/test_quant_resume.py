"""Interrupting ``quantize`` (SIGINT, or a crash after a periodic checkpoint) and running the same command
again gives exactly the model of an uninterrupted run: same codes, scales, float parameters and records."""

import json
import os
import signal

import pytest
import torch
from safetensors import safe_open

from asr_lm_quant.cli import main
from asr_lm_quant.lm.files import save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant import search, train
from asr_lm_quant.quant.packed import PACKED
from asr_lm_quant.text.vocab import Vocabulary

FIX = "tests/fixtures/lm"
CASES = {  # method options, and the objective calls (steps) after which the run is interrupted
    "admm": (["--method", "admm", "--bits", "2", "--project-every", "2", "--final-steps", "4"], [3, 8]),
    "search": (["--method", "search", "--budget-bits", "3", "--gumbel", "--bands", "2", "--plan-trainer", "ste",
                "--search-steps", "6"], [2, 9]),
}


@pytest.fixture(scope="module")
def tiny(repo_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    vocab = Vocabulary.load(repo_dir / FIX / "words.txt")
    torch.manual_seed(0)
    # dropout on: a resumed run must also restore the random generators
    save_lm(d / "lm", TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                             dropout=0.2)), vocab)
    return d


def args_for(repo_dir, tiny, out, options, *extra):
    d = repo_dir / FIX
    return ["quantize", str(tiny / "lm"), str(out), *options, "--train", str(d / "train.txt"), "--valid",
            str(d / "valid.txt"), "--tokens-per-batch", "256", "--max-len", "32", "--steps", "10", "--lr", "0.01",
            "--distill", "0.3", "--seed", "1", "--threads", "1", *extra]


def interrupt_at(monkeypatch, calls, action):
    """Run ``action`` during the n-th training step for each n in ``calls`` (counted over the whole run)."""
    count = [0]
    real = train.objective

    def objective(*a, **k):
        count[0] += 1
        if count[0] in calls:
            action()
        return real(*a, **k)
    monkeypatch.setattr(train, "objective", objective)
    monkeypatch.setattr(search, "objective", objective)


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


def packed(out):
    with safe_open(str(out / PACKED), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def record(out):
    res = json.loads((out / "results.json").read_text())

    def strip(x):  # timings differ from run to run
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items()
                    if k not in ("tokens_per_s", "train_seconds", "sensitivity_seconds", "seconds")}
        return [strip(v) for v in x] if isinstance(x, list) else x
    return strip(res)


def assert_same_result(a, b):
    (ta, ma), (tb, mb) = packed(a), packed(b)
    assert ma == mb and ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    assert record(a) == record(b)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CASES))
def test_sigint_then_rerun_equals_uninterrupted(repo_dir, tiny, tmp_path, method, monkeypatch, capsys):
    options, stops = CASES[method]
    assert main(args_for(repo_dir, tiny, tmp_path / "full", options)) == 0
    out = tmp_path / "interrupted"
    args = args_for(repo_dir, tiny, out, options, "--checkpoint-every", "0")
    interrupt_at(monkeypatch, stops, sigint)
    phases = []
    for _ in stops:  # each stop: a checkpoint of that step, one line, status 130, no outputs
        capsys.readouterr()
        assert main(args) == 130
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert len([ln for ln in err.splitlines() if ln.startswith("asr-lm-quant")]) == 1  # (and progress bars)
        assert "asr-lm-quant quantize: interrupted: stopped by SIGINT after" in err
        assert f"checkpoint in {out / 'checkpoints'}, the same command resumes" in err
        assert sorted(os.listdir(out)) == ["checkpoints"]
        latest = (out / "checkpoints" / "latest").read_text().strip()
        progress = json.loads((out / "checkpoints" / latest / "progress.json").read_text())
        phases.append((progress["current"]["phase"], progress["current"]["step"]))
    assert len(set(p for p, _ in phases)) == 2  # stopped once in each phase
    assert main(args) == 0
    assert not (out / "checkpoints").exists()
    assert_same_result(tmp_path / "full", out)


@pytest.mark.slow
def test_crash_resumes_from_the_periodic_checkpoint(repo_dir, tiny, tmp_path, monkeypatch, capsys):
    options = ["--method", "ste", "--bits", "2"]
    assert main(args_for(repo_dir, tiny, tmp_path / "full", options)) == 0
    out = tmp_path / "crashed"
    args = args_for(repo_dir, tiny, out, options, "--checkpoint-every", "3")

    def crash():
        raise RuntimeError("power cut")
    interrupt_at(monkeypatch, [8], crash)
    with pytest.raises(RuntimeError, match="power cut"):
        main(args)
    latest = (out / "checkpoints" / "latest").read_text().strip()
    progress = json.loads((out / "checkpoints" / latest / "progress.json").read_text())
    assert progress["current"]["phase"] == "ste" and progress["current"]["step"] == 6
    assert sorted(os.listdir(out)) == ["checkpoints"]  # no partial outputs
    assert main(args) == 0  # the crash point is passed once: the rerun goes through
    assert_same_result(tmp_path / "full", out)

    # a checkpoint of another configuration is refused, unless --overwrite discards it
    interrupt_at(monkeypatch, [2], sigint)
    assert main(args_for(repo_dir, tiny, tmp_path / "other", options)) == 130
    capsys.readouterr()
    other = args_for(repo_dir, tiny, tmp_path / "other", ["--method", "ste", "--bits", "4"])
    assert main(other) == 1
    err = capsys.readouterr().err
    assert "holds a checkpoint of another quantization run (bits differ)" in err and "--overwrite" in err
    assert main(other + ["--overwrite"]) == 0
    assert json.loads((tmp_path / "other" / "results.json").read_text())["bits"] == 4
