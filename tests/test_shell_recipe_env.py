"""Recipe environment: path.sh finds the toolkit and steps/, cmd.sh picks the job runner."""

import os
import subprocess

import pytest

RECIPES = ["swbd", "mini"]


def bash(code, cwd, env_extra=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    env.update(env_extra or {})
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=30)


@pytest.mark.parametrize("recipe", RECIPES)
def test_path_sh_puts_toolkit_and_steps_on_path(repo_dir, recipe):
    p = bash("set -eu; . ./path.sh; command -v asr-lm-quant; command -v run.pl; echo $ASR_LM_QUANT_ROOT",
             cwd=repo_dir / "recipes" / recipe)
    assert p.returncode == 0, p.stderr
    tool, runner, root = p.stdout.splitlines()
    assert tool == str(repo_dir / ".venv" / "bin" / "asr-lm-quant")
    assert runner == str(repo_dir / "steps" / "run.pl")
    assert root == str(repo_dir)


def test_path_sh_without_toolkit_says_what_to_do(tmp_path, repo_dir):
    (tmp_path / "recipes" / "x").mkdir(parents=True)
    (tmp_path / "recipes" / "x" / "path.sh").write_text((repo_dir / "recipes" / "swbd" / "path.sh").read_text())
    p = bash(". ./path.sh || echo sourcing-failed", cwd=tmp_path / "recipes" / "x")
    assert "sourcing-failed" in p.stdout
    assert "make venv" in p.stderr


@pytest.mark.parametrize("recipe", RECIPES)
def test_cmd_sh_local_default(repo_dir, recipe):
    p = bash('set -eu; . ./cmd.sh; echo "$train_cmd|$decode_cmd|$cuda_cmd"', cwd=repo_dir / "recipes" / recipe)
    assert p.returncode == 0, p.stderr
    assert [c.split()[0] for c in p.stdout.strip().split("|")] == ["run.pl"] * 3


@pytest.mark.parametrize("queue, runner", [("sge", "queue.pl"), ("slurm", "slurm.pl")])
def test_cmd_sh_uses_kaldi_runners(tmp_path, repo_dir, queue, runner):
    utils = tmp_path / "kaldi" / "egs" / "wsj" / "s5" / "utils"
    utils.mkdir(parents=True)
    (utils / runner).write_text("#!/bin/sh\n")
    (utils / runner).chmod(0o755)
    p = bash('set -eu; . ./cmd.sh; echo "$train_cmd|$cuda_cmd"', cwd=repo_dir / "recipes" / "swbd",
             env_extra={"ASR_LM_QUANT_QUEUE": queue, "KALDI_ROOT": str(tmp_path / "kaldi")})
    assert p.returncode == 0, p.stderr
    train, cuda = p.stdout.strip().split("|")
    assert train.split()[0] == str(utils / runner)
    assert "--gpu 1" in cuda


def test_cmd_sh_errors(repo_dir, tmp_path):
    cwd = repo_dir / "recipes" / "swbd"
    p = bash(". ./cmd.sh || echo failed", cwd=cwd, env_extra={"ASR_LM_QUANT_QUEUE": "slurm",
                                                               "KALDI_ROOT": str(tmp_path)})
    assert "failed" in p.stdout and "slurm.pl" in p.stderr and "KALDI_ROOT" in p.stderr
    p = bash(". ./cmd.sh || echo failed", cwd=cwd, env_extra={"ASR_LM_QUANT_QUEUE": "pbs"})
    assert "failed" in p.stdout and "local, sge or slurm" in p.stderr
