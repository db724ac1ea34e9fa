"""steps/train_lm.sh: the Kaldi-style wrapper around `asr-lm-quant train`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = {"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0},
        "train": {"max_epochs": 1, "tokens_per_batch": 2048, "max_len": 48, "warmup_steps": 2}}


def run(repo_dir, *args, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{repo_dir / 'steps'}:{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(repo_dir / "steps/train_lm.sh"), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_train_lm_script(repo_dir, tmp_path):
    text = tmp_path / "data/lm"
    text.mkdir(parents=True)
    for f in ("train.txt", "valid.txt", "words.txt"):
        (text / f).write_bytes((repo_dir / "tests/fixtures/lm" / f).read_bytes())
    conf = tmp_path / "lm.json"
    conf.write_text(json.dumps(TINY))
    p = run(repo_dir, "--seed", 3, "--threads", 1, conf, text, "exp/lm", cwd=tmp_path)
    assert p.returncode == 0, p.stderr + p.stdout
    exp = tmp_path / "exp/lm"
    assert (exp / "model.safetensors").exists() and (exp / "words.txt").exists()
    log = (exp / "log/train.log").read_text()
    assert log.startswith("# ") and "# Ended (code 0)" in log
    assert json.loads((exp / "train_config.json").read_text())["train"]["seed"] == 3
    assert "valid_ppl" in p.stdout


@pytest.mark.parametrize("args,message", [
    (["--nproc", "zero", "c.json", "t", "e"], "--nproc must be a positive integer"),
    (["nope.json", "t", "e"], "expected file nope.json to exist"),
    (["c.json", "t", "e"], "expected file t/train.txt to exist"),
    (["only-two", "args"], "Usage:"),
])
def test_train_lm_script_errors(repo_dir, tmp_path, args, message):
    (tmp_path / "c.json").write_text("{}")
    p = run(repo_dir, *args, cwd=tmp_path)
    assert p.returncode != 0 and message in p.stderr
