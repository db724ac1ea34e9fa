"""Killing `asr-lm-quant train` (SIGKILL, mid-run) and running the same command again gives the weights of an
uninterrupted run, bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

FIX = "tests/fixtures/lm"
TINY = {"model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "dropout": 0.1},
        "train": {"max_epochs": 6, "tokens_per_batch": 1024, "max_len": 48, "lr": 0.003, "warmup_steps": 4,
                  "checkpoint_every": 5, "log_every": 4, "keep_checkpoints": 2, "seed": 3}}


def train_cmd(cfg, d, out):
    return [sys.executable, "-m", "asr_lm_quant.cli", "train", "--config", str(cfg), "--train", str(d / "train.txt"),
            "--valid", str(d / "valid.txt"), "--vocab", str(d / "words.txt"), "--out", str(out), "--threads", "1"]


def latest_step(out):
    latest = out / "checkpoints" / "latest"
    try:
        name = latest.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(name.split("-")[-1]) if name.startswith("ckpt-") else 0


@pytest.mark.slow
def test_sigkill_then_rerun_reaches_uninterrupted_weights(repo_dir, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    d = repo_dir / FIX
    env = {**os.environ, "PYTHONPATH": str(repo_dir)}
    subprocess.run(train_cmd(cfg, d, tmp_path / "full"), check=True, capture_output=True, env=env, timeout=600)
    total = json.loads((tmp_path / "full" / "results.json").read_text())["steps"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(cfg, d, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while latest_step(out) < 10 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = latest_step(out)
    assert 10 <= killed_at < total, "the run must be killed part-way"
    assert not (out / "results.json").exists()

    rerun = subprocess.run(train_cmd(cfg, d, out), capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((out / "results.json").read_text())["steps"] == total
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


@pytest.mark.slow
def test_sigint_checkpoints_at_the_signal_and_says_so(repo_dir, tmp_path):
    # Ctrl-C: the step in progress finishes, a checkpoint of that step is written, one line and status 130.
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "train": {**TINY["train"], "checkpoint_every": 1000}}))
    d = repo_dir / FIX
    env = {**os.environ, "PYTHONPATH": str(repo_dir)}
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(train_cmd(cfg, d, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    log = out / "log" / "train.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and '"event": "train"' in log.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "train: interrupted: stopped by SIGINT after step" in err and "the same command resumes" in err
    step = int(err.split("after step ")[1].split(";")[0])
    assert latest_step(out) == step > 0  # a checkpoint exactly at the signal, not at the last scheduled one
    events = [json.loads(x)["event"] for x in log.read_text().splitlines()]
    assert "interrupted" in events
    assert not (out / "results.json").exists()
