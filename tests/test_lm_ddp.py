"""Data-parallel training under torchrun (two CPU processes, gloo)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from asr_lm_quant.lm.train import train

FIX = "tests/fixtures/lm"
CFG = {"model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "dropout": 0.0},
       "train": {"max_epochs": 1, "tokens_per_batch": 1024, "max_len": 48, "lr": 0.003, "warmup_steps": 2,
                 "checkpoint_every": 4, "log_every": 4}}


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(repo_dir, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(CFG))
    d = repo_dir / FIX
    args = ["--config", str(cfg), "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"),
            "--vocab", str(d / "words.txt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "asr_lm_quant.cli", "train", *args, "--out", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "ddp/results.json").read_text())
    assert res["world_size"] == 2 and res["steps"] > 4
    assert res["max_rank_weight_diff"] == 0.0  # the ranks hold identical weights
    single = train(cfg, d / "train.txt", d / "valid.txt", d / "words.txt", tmp_path / "one")
    assert single["steps"] == res["steps"] and single["train_tokens_seen"] == res["train_tokens_seen"]
    a, b = load_file(str(tmp_path / "ddp/model.safetensors")), load_file(str(tmp_path / "one/model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=1e-3)
    assert res["valid_ppl"] == pytest.approx(single["valid_ppl"], rel=1e-3)
