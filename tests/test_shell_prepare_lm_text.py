"""steps/prepare_lm_text.sh: the text preparation step as recipes call it (log, re-run, overwrite)."""

import os
import subprocess

import pytest


@pytest.fixture
def env(repo_dir):
    e = dict(os.environ)
    e["PATH"] = f"{repo_dir / '.venv' / 'bin'}:{repo_dir / 'steps'}:{e['PATH']}"
    return e


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.txt").write_text("the cat sat\nthe dog sat\nthe cat ran\n")
    (tmp_path / "valid.txt").write_text("the bird sat\n")
    (tmp_path / "test.txt").write_text("a cat ran\n")
    return ["plain", "--train", "train.txt", "--valid", "valid.txt", "--test", "test.txt"]


def step(repo_dir, env, cwd, *args):
    return subprocess.run([str(repo_dir / "steps" / "prepare_lm_text.sh"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_prepares_text_with_log_then_skips_or_overwrites(repo_dir, env, tmp_path, corpus):
    p = step(repo_dir, env, tmp_path, "data/lm", *corpus)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "data" / "lm"
    assert (out / "train.txt").read_text() == "the cat sat\nthe dog sat\nthe cat ran\n"
    assert (out / "valid.txt").read_text() == "the <unk> sat\n"
    assert (out / "test.txt").read_text() == "<unk> cat ran\n"
    words = [line.split()[0] for line in (out / "words.txt").read_text().splitlines()]
    assert sorted(words) == sorted(["<s>", "<unk>", "the", "cat", "sat", "dog", "ran"])
    log = (out / "log" / "prepare_text.log").read_text()
    assert log.startswith("# asr-lm-quant prepare-text plain --train train.txt --valid valid.txt "
                          "--test test.txt --out data/lm\n")
    assert "# Ended (code 0)" in log
    assert "3 train, 1 valid, 1 test sentences, 7 words" in p.stdout

    # A finished directory is left alone (a recipe re-run from an earlier stage) ...
    (tmp_path / "train.txt").write_text("a b\n")
    p = step(repo_dir, env, tmp_path, "data/lm", *corpus)
    assert p.returncode == 0 and "skipping" in p.stdout
    assert (out / "train.txt").read_text().startswith("the cat sat")
    # ... unless asked to redo it.
    p = step(repo_dir, env, tmp_path, "--overwrite", "true", "data/lm", *corpus)
    assert p.returncode == 0, p.stderr
    assert (out / "train.txt").read_text() == "a b\n"


def test_failure_names_the_log_and_the_problem(repo_dir, env, tmp_path, corpus):
    args = [a if a != "valid.txt" else "missing.txt" for a in corpus]
    p = step(repo_dir, env, tmp_path, "data/lm", *args)
    assert p.returncode != 0
    assert "data/lm/log/prepare_text.log" in p.stderr
    assert "missing.txt: file does not exist" in p.stderr
    assert sorted(f.name for f in (tmp_path / "data" / "lm").iterdir()) == ["log"]  # no partial results


def test_usage_errors(repo_dir, env, tmp_path):
    p = step(repo_dir, env, tmp_path, "data/lm")
    assert p.returncode != 0 and "Usage" in p.stderr
    p = step(repo_dir, env, tmp_path, "data/lm", "wiki")
    assert p.returncode != 0 and "unknown source 'wiki'" in p.stderr
