"""recipes/mini/run.sh: options checked before any stage, and stage 5's tuning of every system (each on its own
and, for quantized systems, at their full-precision LM's settings) over rescoring outputs already there."""

import json
import os
import shutil
import subprocess
import sys

import pytest


@pytest.fixture
def recipe(tmp_path, repo_dir):
    """A copy of recipes/mini (outputs go to tmp, not into the repository), linked to the toolkit."""
    r = tmp_path / "mini"
    r.mkdir()
    for f in ("run.sh", "path.sh", "cmd.sh"):
        shutil.copy(repo_dir / "recipes" / "mini" / f, r / f)
    for d in ("steps", "local", "conf"):
        (r / d).symlink_to((repo_dir / "recipes" / "mini" / d).resolve())
    return r


def run(recipe, repo_dir, *args):
    env = dict(os.environ, ASR_LM_QUANT_ROOT=str(repo_dir))
    env.pop("ASR_LM_QUANT_QUEUE", None)
    return subprocess.run(["./run.sh", *args], capture_output=True, text=True, cwd=recipe, env=env, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--weights", "0.5,abc"], "--weights must be a comma-separated list of interpolation weights in [0, 1], "
                               "not '0.5,abc'"),
    (["--weights", "1.5"], "--weights must be"),
    (["--nj", "0"], "--nj must be a positive integer, not '0'"),
    (["--nbest", "ten"], "--nbest must be a positive integer, not 'ten'"),
    (["--stage", "-1"], "--stage must be a non-negative integer, not '-1'"),
    (["--lm-epochs", "0"], "--lm-epochs must be a positive integer (or empty), not '0'"),
    (["--bf16", "yes"], "--bf16 must be true, false or auto, not 'yes'"),
    (["--quick", "--threads", "2x"], "--threads must be a positive integer, not '2x'"),
    (["--larger-lm", "yes"], "expected true or false for --larger-lm, got 'yes'"),
])
def test_bad_options_stop_before_any_stage(recipe, repo_dir, args, message):
    p = run(recipe, repo_dir, *args)
    assert p.returncode == 1 and message in p.stderr, p.stderr
    assert "Stage 0" not in p.stdout and not (recipe / "data").exists() and not (recipe / "exp").exists()
    assert not (recipe / "quick").exists()


def test_quick_runs_in_its_own_directory(recipe, repo_dir):
    """--quick keeps its data/ and exp/ under quick/, so that a full run in the recipe later does not meet its
    tiny models; the recipe's conf/, local/ and steps/ are linked there."""
    p = run(recipe, repo_dir, "--quick", "--stage", "7")
    assert p.returncode == 0, p.stderr
    assert "Quick run in quick/" in p.stdout
    for d in ("conf", "local", "steps"):
        assert (recipe / "quick" / d).is_symlink() and (recipe / "quick" / d).resolve() == (recipe / d).resolve()
    assert not (recipe / "exp").exists() and not (recipe / "data").exists()
    assert run(recipe, repo_dir, "--quick", "--stage", "7").returncode == 0  # again: the links are there


GRID = [(10, "0.0"), (12, "0.5")]


def _scored(d, wer_of, best=None):
    """A decode dir as steps/score_kaldi.sh leaves it (sweep.json, the reference, each setting's 1-best);
    ``best``, if given, is the setting with the lowest WER."""
    sk = d / "scoring_kaldi"
    sk.mkdir(parents=True)
    settings = [{"lmwt": float(l), "wip": p, "ref_words": 3, "wer_line": "%WER",
                 "wer": 5.0 if (l, p) == best else wer_of(l, p)} for l, p in GRID]
    (sk / "sweep.json").write_text(json.dumps({"settings": settings, "best": min(settings, key=lambda s: s["wer"])}))
    (sk / "test_filt.txt").write_text("u1 a b c\n")
    for l, p in GRID:
        (sk / f"penalty_{p}").mkdir()
        (sk / f"penalty_{p}" / f"{l}.txt").write_text(f"u1 a b {d.parent.parent.name}_{d.parent.name}_{d.name}_{l}_{p}\n")


def test_stage5_tunes_every_system_and_quantized_ones_at_full_precision_settings(recipe, repo_dir):
    exp = recipe / "exp"
    (exp / "lm").mkdir(parents=True)
    (exp / "lm" / "config.json").write_text("{}")
    (exp / "quant" / "ptq-8").mkdir(parents=True)
    (exp / "quant" / "ptq-8" / "config.json").write_text("{}")
    (exp / "quant" / "results.json").write_text(json.dumps([{"name": "fp", "model": "base", "method": "fp"},
                                                            {"name": "ptq-8", "model": "base", "method": "ptq"}]))
    # Rescoring is done (every sweep is there), so stage 5 only tunes. On dev, lm is best at w 0.9, LMWT 12,
    # penalty 0.5; q_ptq-8 at w 0.5, LMWT 10, penalty 0.0.
    dev_best = {"lm": ("0.9", (12, "0.5")), "q_ptq-8": ("0.5", (10, "0.0"))}
    for name, (best_w, best) in dev_best.items():
        for method in ("nbest", "lattice"):
            for w in ("0.5", "0.9"):
                base = exp / "rescore" / name / method
                _scored(base / f"dev_w{w}", lambda l, p: 9.0, best if w == best_w else None)
                _scored(base / f"eval_w{w}", lambda l, p, w=w: 20 + l + float(p) + float(w))
    p = run(recipe, repo_dir, "--stage", "5", "--stop-stage", "5", "--weights", "0.50,0.9")
    assert p.returncode == 0, p.stderr
    assert "lm: rescored" in p.stdout and "q_ptq-8: rescored" in p.stdout
    assert (exp / "rescore_systems.txt").read_text() == "lm exp/lm -\nq_ptq-8 exp/quant/ptq-8 lm\n"
    for method in ("nbest", "lattice"):
        lm = json.loads((exp / "rescore" / "lm" / f"{method}.json").read_text())
        assert lm["chosen"] == {"weight": "0.9", "lmwt": 12.0, "wip": 0.5} and "at_reference" not in lm
        q = json.loads((exp / "rescore" / "q_ptq-8" / f"{method}.json").read_text())
        assert q["chosen"] == {"weight": "0.5", "lmwt": 10.0, "wip": 0.0} and q["eval_wer"] == pytest.approx(30.5)
        at = q["at_reference"]
        assert at["chosen"] == lm["chosen"] and at["eval_wer"] == pytest.approx(20 + 12 + 0.5 + 0.9)
        assert at["tuning"] == f"exp/rescore/lm/{method}.json"
        hyp = (exp / "rescore" / "q_ptq-8" / at["eval_hyp"]).read_text()
        assert hyp == f"u1 a b q_ptq-8_{method}_eval_w0.9_12_0.5\n"
    # The outputs of stage 5 pass the recipe's own check of them.
    c = subprocess.run([sys.executable, "local/check_outputs.py", "--upto", "5", "exp"], cwd=recipe,
                       capture_output=True, text=True)
    assert "rescore" not in c.stderr, c.stderr
    q_json = exp / "rescore" / "q_ptq-8" / "nbest.json"
    q_json.write_text(json.dumps({k: v for k, v in json.loads(q_json.read_text()).items() if k != "at_reference"}))
    c = subprocess.run([sys.executable, "local/check_outputs.py", "--upto", "5", "exp"], cwd=recipe,
                       capture_output=True, text=True)
    assert c.returncode == 1 and "q_ptq-8/nbest.json: no 'at_reference'" in c.stderr, c.stderr
