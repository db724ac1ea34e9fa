"""Data-parallel quantization under torchrun (two CPU processes, gloo) against one process.

Both runs see the same global batches; only the order of floating-point sums differs (the gradients of two
half batches are added), so the results agree to rounding: the same codes for all but a handful of weights,
scales and float parameters within 1e-3, perplexity within 1e-3 relative."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from asr_lm_quant.cli import main
from asr_lm_quant.lm.files import save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.packed import PACKED
from asr_lm_quant.text.vocab import Vocabulary

FIX = "tests/fixtures/lm"
METHODS = {
    "ste": ["--method", "ste", "--bits", "2", "--distill", "0.5"],
    "admm": ["--method", "admm", "--bits", "2", "--project-every", "3", "--final-steps", "3"],
    "hessian": ["--method", "hessian", "--budget-bits", "2", "--hessian-max-samples", "5",
                "--hessian-batches", "3", "--hessian-tol", "0", "--project-every", "3"],
    # the architecture logits are trained beside the model's weights: DDP all-reduces their gradients too
    "search": ["--method", "search", "--budget-bits", "3", "--gumbel", "--plan-trainer", "ste",
               "--search-steps", "6"],
}


@pytest.fixture(scope="module")
def tiny(repo_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    vocab = Vocabulary.load(repo_dir / FIX / "words.txt")
    torch.manual_seed(0)
    # no dropout: the ranks' dropout masks cannot be those of one process
    save_lm(d / "lm", TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                             dropout=0.0)), vocab)
    return d


def tensors(out):
    with safe_open(str(out / PACKED), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_two_processes_match_one(repo_dir, tiny, tmp_path, method):
    d = repo_dir / FIX
    args = [str(tiny / "lm"), None, *METHODS[method], "--train", str(d / "train.txt"), "--valid",
            str(d / "valid.txt"), "--tokens-per-batch", "256", "--max-len", "32", "--steps", "12", "--lr", "0.01",
            "--seed", "2", "--threads", "1"]
    args[1] = str(tmp_path / "ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_dir)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "asr_lm_quant.cli", "quantize", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count('"method"') == 1  # only rank 0 reports
    args[1] = str(tmp_path / "one")
    assert main(["quantize", *args]) == 0

    ddp, one = tmp_path / "ddp", tmp_path / "one"
    # rank 0 alone wrote the outputs; the checkpoints are gone
    assert sorted(os.listdir(ddp)) == sorted(os.listdir(one)) == sorted(
        ["config.json", PACKED, "plan.json", "quant_config.json", "results.json", "words.txt"])
    rd, r1 = (json.loads((o / "results.json").read_text()) for o in (ddp, one))
    assert (rd["world_size"], r1["world_size"]) == (2, 1)
    assert rd["plan_bits"] == r1["plan_bits"]
    assert rd["valid_ppl"] == pytest.approx(r1["valid_ppl"], rel=1e-3)
    assert rd["record"]["train"][-1]["loss"] == pytest.approx(r1["record"]["train"][-1]["loss"], rel=1e-3)
    if method == "search":
        ls2, ls1 = rd["record"]["search"]["logits"], r1["record"]["search"]["logits"]
        for n, v in ls1.items():
            assert ls2[n] == pytest.approx(v, rel=1e-3, abs=1e-5), n
    if method == "hessian":  # the samples are shared out, not changed: the same estimate, the same stop
        h2, h1 = rd["record"]["hessian"], r1["record"]["hessian"]
        assert h2["samples"] == h1["samples"] == 5
        for n, t in h1["trace"].items():
            assert h2["trace"][n] == pytest.approx(t, rel=1e-9, abs=1e-12), n
    a, b = tensors(ddp), tensors(one)
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("codes."):  # bit-packed codes: bytes that differ, at most 1 in 200
            same = float((a[k] == b[k]).float().mean())
            assert same >= 0.995, (k, same)
        else:
            torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3, msg=k)


def test_unknown_device_is_a_clear_error(repo_dir, tiny, tmp_path, capsys):
    d = repo_dir / FIX
    rc = main(["quantize", str(tiny / "lm"), str(tmp_path / "q"), "--method", "ste", "--bits", "2", "--train",
               str(d / "train.txt"), "--steps", "2", "--device", "tpu:3"])
    assert rc == 1
    assert "--device 'tpu:3': not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
    rc = main(["quantize", str(tiny / "lm"), str(tmp_path / "q"), "--method", "ste", "--bits", "2", "--train",
               str(d / "train.txt"), "--steps", "2", "--checkpoint-every", "-1"])
    assert rc == 1 and "checkpoint_every must not be negative" in capsys.readouterr().err
