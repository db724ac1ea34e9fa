"""recipes/swbd/run.sh stages 2-5 (quantize, rescore, Hub5/Kaldi scoring, results table) on a miniature s5c."""

import gzip
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

EVAL_FIXTURE = "tests/fixtures/scoring/eval2000_mini"
DECODE = "exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg"
# Words beyond the references, so that lattices hold errors to rescore away.
EXTRA = "the a to of and i you yeah uh-huh okay store going were police".split()
# Narrow sweeps keep the test short (each Hub5 setting is three hubscr runs).
HUB5_SCORING = "--min-lmwt 10 --max-lmwt 10 --word-ins-penalty 0.0,0.5"
KALDI_SCORING = "--min-lmwt 9 --max-lmwt 10 --word-ins-penalty 0.0,0.5"


def eval_words(repo_dir):
    text = (repo_dir / EVAL_FIXTURE / "text").read_text().splitlines()
    return sorted({w for line in text for w in line.split()[1:]} | set(EXTRA))


def make_s5c(root, repo_dir, seed=0):
    """data/lang, data/eval2000 (stm, glm, segments ...), the 4-gram ARPA (gzipped) and a decode dir of
    2 lat.N.gz with CompactLattices over words.txt, as Kaldi's s5c leaves them."""
    from asr_lm_quant.kaldi.archive import write_lattices
    from asr_lm_quant.kaldi.synthetic import random_compact_lattice
    from asr_lm_quant.ngram import train_arpa

    words = eval_words(repo_dir)
    syms = ["<eps>"] + words + ["#0", "<s>", "</s>"]
    (root / "data" / "lang").mkdir(parents=True)
    (root / "data" / "lang" / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(syms)))
    ev = root / "data" / "eval2000"
    shutil.copytree(repo_dir / EVAL_FIXTURE, ev)
    for f in ("hyp_good", "hyp_bad"):
        (ev / f).unlink()
    utts = [line.split()[0] for line in (ev / "text").read_text().splitlines()]
    (ev / "utt2spk").write_text("".join(f"{u} {u.split('_0')[0]}\n" for u in utts))
    lm = root / "data" / "local" / "lm"
    lm.mkdir(parents=True)
    corpus = lm / "text.txt"
    corpus.write_text("".join(" ".join(line.split()[1:]) + "\n" for line in (ev / "text").read_text().splitlines())
                      + " ".join(EXTRA) + "\n")
    train_arpa(corpus, lm / "sw1_fsh.o4g.kn", order=3)
    with open(lm / "sw1_fsh.o4g.kn", "rb") as f, gzip.open(lm / "sw1_fsh.o4g.kn.gz", "wb") as g:
        g.write(f.read())
    (lm / "sw1_fsh.o4g.kn").unlink()
    dec = root / DECODE
    dec.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for job, keys in ((1, utts[:3]), (2, utts[3:])):
        items = [(k, random_compact_lattice(rng, num_frames=30, num_states=7, arcs_per_state=2.0,
                                            vocab=len(words) + 1, max_tid=200)) for k in keys]
        write_lattices(f"ark:| gzip -c > {dec}/lat.{job}.gz", items)
    (dec / "num_jobs").write_text("2\n")
    return utts, words


def make_recipe(root, repo_dir, s5c_words):
    """A copy of recipes/swbd with stage 0-1 outputs: data/lm texts, a tiny LM in exp/lm and its perplexities."""
    import torch

    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.lm.ppl import perplexity
    from asr_lm_quant.text.vocab import Vocabulary

    root.mkdir()
    for f in ("run.sh", "path.sh", "cmd.sh"):
        shutil.copy(repo_dir / "recipes" / "swbd" / f, root / f)
    (root / "steps").symlink_to(repo_dir / "steps")
    (root / "local").symlink_to(repo_dir / "local" / "swbd")
    (root / "conf").mkdir()
    (root / "conf" / "quant_tiny.json").write_text(json.dumps({
        "defaults": {"tokens_per_batch": 64, "max_len": 16, "eval_tokens_per_batch": 256,
                     "finetune": {"steps": 2, "warmup": 1, "log_every": 1}, "admm": {"project_every": 1}},
        "systems": [{"name": "admm2", "method": "admm", "bits": 2}]}))
    text = root / "data" / "lm"
    text.mkdir(parents=True)
    ref = (repo_dir / EVAL_FIXTURE / "text").read_text().splitlines()
    sents = [" ".join(line.split()[1:]) for line in ref]
    (text / "train.txt").write_text("\n".join(sents * 3 + [" ".join(EXTRA)]) + "\n")
    (text / "valid.txt").write_text("\n".join(sents[:2]) + "\n")
    (text / "test.txt").write_text("\n".join(sents[2:]) + "\n")
    vocab = Vocabulary(["<s>", "<unk>"] + s5c_words)
    vocab.save(text / "words.txt")
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                   dropout=0.0, norm="post")).eval()
    lm = root / "exp" / "lm"
    save_lm(lm, model, vocab)
    for split in ("valid", "test"):
        r = perplexity(model, vocab, text / f"{split}.txt", progress=False)
        (lm / f"ppl_{split}.json").write_text(json.dumps(r))


def run(recipe, repo_dir, *args, timeout=300):
    env = dict(os.environ, ASR_LM_QUANT_ROOT=str(repo_dir), OMP_NUM_THREADS="1")
    env.pop("ASR_LM_QUANT_QUEUE", None)
    return subprocess.run(["./run.sh", *args], capture_output=True, text=True, cwd=recipe, env=env, timeout=timeout)


@pytest.fixture
def setup(tmp_path, repo_dir):
    s5c = tmp_path / "s5c"
    utts, words = make_s5c(s5c, repo_dir)
    recipe = tmp_path / "swbd"
    make_recipe(recipe, repo_dir, words)
    return {"s5c": s5c, "recipe": recipe, "utts": utts}


@pytest.mark.slow
def test_stages_2_to_5_end_to_end(setup, repo_dir):
    from asr_lm_quant.scoring.sctk import SctkMissing, find_sctk
    try:
        find_sctk()
    except SctkMissing as e:
        pytest.skip(f"stage 4 scores with NIST SCTK's hubscr: {e}; `make system-deps` installs it")
    s5c, recipe = setup["s5c"], setup["recipe"]
    args = ["--kaldi-swbd-dir", str(s5c), "--quant-conf", "conf/quant_tiny.json", "--nj", "2",
            "--hub5-scoring-opts", HUB5_SCORING, "--kaldi-scoring-opts", KALDI_SCORING, "--quant-threads", "1"]
    p = run(recipe, repo_dir, *args, "--stage", "2")
    assert p.returncode == 0, p.stdout + p.stderr
    for n in (2, 3, 4, 5):
        assert f"Stage {n}:" in p.stdout

    # Stage 2: the quantized system, packed, with its results.
    q = json.loads((recipe / "exp" / "lm_admm2" / "results.json").read_text())
    assert q["method"] == "admm" and q["bits"] == 2 and q["compression"] > 1
    assert "# Ended (code 0)" in (recipe / "exp" / "lm_admm2" / "log" / "quantize.log").read_text()

    # Stage 3: every LM x method, lattices for both jobs, logs under the output dir.
    dname = "decode_eval2000_sw1_fsh_fg"
    rdir = recipe / "exp" / "rescore"
    for lm in ("lm", "lm_admm2"):
        for method in ("nbest", "lattice"):
            out = rdir / f"{lm}_{method}_{dname}"
            assert (out / "num_jobs").read_text().strip() == "2"
            from asr_lm_quant.kaldi.archive import read_lattices
            keys = [k for j in (1, 2) for k, _ in read_lattices(f"ark:gunzip -c {out}/lat.{j}.gz |")]
            assert sorted(keys) == sorted(setup["utts"])
            summary = json.loads((out / "log" / "rescore.1.json").read_text())
            assert summary
    # Nothing was written into the Kaldi directory.
    assert sorted(p.name for p in (s5c / DECODE).iterdir()) == ["lat.1.gz", "lat.2.gz", "num_jobs"]

    # Stage 4: Hub5 scoring per subset and Kaldi-style scoring of the first pass and every rescored dir.
    first = rdir / f"firstpass_{dname}"
    assert (first / "lat.1.gz").is_symlink()
    scored = [first] + [rdir / f"{lm}_{m}_{dname}" for lm in ("lm", "lm_admm2") for m in ("nbest", "lattice")]
    for d in scored:
        hub5 = json.loads((d / "scoring" / "hub5_summary.json").read_text())
        assert list(hub5["subsets"]) == ["total", "swbd", "callhm"]
        assert [(s["lmwt"], s["wip"]) for s in hub5["settings"]] == [(10, "0.0"), (10, "0.5")]
        assert (d / "score_10_0.5").is_dir()
        kaldi = json.loads((d / "scoring_kaldi" / "sweep.json").read_text())
        assert kaldi["best"]["lmwt"] in (9, 10)
        assert (d / "scoring_kaldi" / "best_wer").read_text().startswith("%WER ")

    # Stage 5: the table, from those files.
    res = json.loads((recipe / "exp" / "results.json").read_text())
    lms = {r["lm"]: r for r in res["lms"]}
    assert set(lms) == {"lm", "lm_admm2"}
    assert lms["lm"]["method"] == "fp" and lms["lm"]["bits"] == 32
    assert lms["lm"]["valid_ppl"] == json.loads((recipe / "exp/lm/ppl_valid.json").read_text())["ppl"]
    assert lms["lm_admm2"]["size_mb"] == q["size_mb"] and lms["lm_admm2"]["test_ppl"] == q["test_ppl"]
    assert lms["lm"]["size_mb"] == pytest.approx(q["fp32_mb"])
    dec = res["decodes"][dname]
    fp_hub5 = json.loads((first / "scoring" / "hub5_summary.json").read_text())
    for sub in ("total", "swbd", "callhm"):
        assert dec["first_pass"]["hub5"][sub]["wer"] == fp_hub5["subsets"][sub]["wer"]
    for lm in ("lm", "lm_admm2"):
        for m in ("nbest", "lattice"):
            h = dec["rescored"][lm][m]["hub5"]
            assert set(h) == {"total", "swbd", "callhm"}
            ref = json.loads((rdir / f"{lm}_{m}_{dname}" / "scoring" / "hub5_summary.json").read_text())
            assert h["total"]["wer"] == ref["subsets"]["total"]["wer"] >= 0
    md = (recipe / "exp" / "results.md").read_text()
    assert "| lm_admm2 | admm | 2 |" in md and "| lm | fp | 32 |" in md
    assert md.count("| 20-best |") == 2 and md.count("| lattice |") == 2
    assert "first pass (n-gram)" in md and "Transformer LM, lattice | 10.6 | 6.8 | 14.4" in md
    assert (recipe / "exp" / "results_wer_vs_size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Re-running skips everything that is done.
    p = run(recipe, repo_dir, *args, "--stage", "2", "--stop-stage", "4")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "admm2: done before" in p.stdout
    assert p.stdout.count("done before") == 15  # the quantized system, 4 rescorings, 5 x 2 scorings
    assert p.stdout.count("Hub5 scoring done before") == 5


def test_errors_name_what_is_missing(setup, repo_dir):
    s5c, recipe = setup["s5c"], setup["recipe"]
    base = ["--kaldi-swbd-dir", str(s5c), "--quant-conf", "conf/quant_tiny.json"]
    # A quantized system that was never built cannot rescore.
    p = run(recipe, repo_dir, *base, "--stage", "3", "--stop-stage", "3")
    assert p.returncode != 0 and "lm_admm2 holds no model: run stage 1 (or 2 for lm_admm2) first" in p.stderr
    p = run(recipe, repo_dir, *base, "--stage", "2", "--quant-systems", "admm3")
    assert p.returncode != 0 and "conf/quant_tiny.json" in p.stderr and "no quantization system 'admm3'" in p.stderr
    (recipe / "conf" / "bad.json").write_text('{"systems": [{"name": "x"}]}')
    p = run(recipe, repo_dir, *base, "--quant-conf", "conf/bad.json", "--stage", "2")
    assert p.returncode != 0 and "conf/bad.json, key 'systems[0]': system 0 needs a 'name' and a 'method'" in p.stderr
    # The old LM of the lattices: named, with the option that gives it.
    lm = s5c / "data" / "local" / "lm" / "sw1_fsh.o4g.kn.gz"
    lm.rename(lm.with_suffix(".bak"))
    p = run(recipe, repo_dir, *base, "--rescore-lms", "lm", "--stage", "3", "--stop-stage", "3")
    assert p.returncode != 0 and f"no such file {lm}" in p.stderr and "--old-lm" in p.stderr
    lm.with_suffix(".bak").rename(lm)
    p = run(recipe, repo_dir, *base, "--rescore-lms", "lm", "--stage", "3", "--weight", "0.5,0.8")
    assert p.returncode != 0 and "--weight takes one weight" in p.stderr
    p = run(recipe, repo_dir, *base, "--rescore-lms", "lm", "--stage", "3", "--decode-dirs", "exp/none/decode_x")
    assert p.returncode != 0 and f"no such file {s5c}/exp/none/decode_x/num_jobs" in p.stderr
    assert not (recipe / "exp" / "rescore").exists()  # nothing started
    # Scoring before rescoring; a decode dir whose data set is unknown.
    p = run(recipe, repo_dir, *base, "--rescore-lms", "lm", "--stage", "4", "--stop-stage", "4")
    assert p.returncode != 0 and "lm_nbest_decode_eval2000_sw1_fsh_fg is not complete: run stage 3 first" in p.stderr
    assert not (s5c / DECODE / "scoring").exists()
    shutil.copytree(s5c / DECODE, s5c / "exp/chain/tdnn7q_sp/decode_dev_sw1_tg")
    p = run(recipe, repo_dir, *base, "--rescore-lms", "lm", "--stage", "4", "--stop-stage", "4",
            "--decode-dirs", "exp/chain/tdnn7q_sp/decode_dev_sw1_tg")
    assert p.returncode != 0 and "found no data dir" in p.stderr and "--eval-data" in p.stderr


def load_results_module(repo_dir):
    import importlib.util
    spec = importlib.util.spec_from_file_location("swbd_results", repo_dir / "local" / "swbd" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_scores(d, subsets, wer0, kaldi_wer):
    (d / "scoring").mkdir(parents=True)
    (d / "scoring" / "hub5_summary.json").write_text(json.dumps({"name": "rt03", "subsets": {
        s: {"wer": wer0 + i, "lmwt": 10, "wip": "0.0", "best_wer": "x"} for i, s in enumerate(subsets)}}))
    (d / "scoring_kaldi").mkdir()
    (d / "scoring_kaldi" / "sweep.json").write_text(json.dumps({"best": {
        "wer": kaldi_wer, "lmwt": 11, "wip": "0.5", "best_wer": f"%WER {kaldi_wer:.2f} [ ... ]"}}))


def test_results_table_from_files(tmp_path, repo_dir):
    res_mod = load_results_module(repo_dir)
    exp = tmp_path / "exp"
    q = exp / "lm_hessian16x"
    q.mkdir(parents=True)
    (q / "results.json").write_text(json.dumps({
        "method": "hessian", "bits": None, "avg_bits": 2.01, "size_mb": 6.5, "fp32_mb": 100.0,
        "compression": 15.4, "valid_ppl": 48.2, "test_ppl": 42.0}))
    rdir = exp / "rescore"
    write_scores(rdir / "firstpass_decode_rt03_sw1_fsh_fg", ("total", "swbd", "fsh"), 15.0, 15.5)
    write_scores(rdir / "lm_hessian16x_nbest_decode_rt03_sw1_fsh_fg", ("total", "swbd", "fsh"), 13.0, 13.25)
    res = res_mod.collect([("lm_hessian16x", q)], ["decode_rt03_sw1_fsh_fg"], rdir, ["nbest", "lattice"],
                          {"nbest": 20, "weight": 0.8, "methods": ["nbest", "lattice"]})
    dec = res["decodes"]["decode_rt03_sw1_fsh_fg"]
    assert dec["first_pass"]["hub5"]["fsh"]["wer"] == 17.0
    assert dec["rescored"]["lm_hessian16x"]["nbest"]["kaldi"]["wer"] == 13.25
    assert dec["rescored"]["lm_hessian16x"]["lattice"] is None  # not run: empty cells, not an error
    md = res_mod.markdown(res)
    assert "| LM | bits | size MB | rescoring | total | swbd | fsh | Kaldi |" in md
    assert "| lm_hessian16x | hessian | mixed 2.01 | 6.500 | 15.4x | 48.20 | 42.00 |" in md
    assert "| first pass (n-gram) | - | - | - | 15.0 | 16.0 | 17.0 | 15.50 |" in md
    assert "| lm_hessian16x | mixed 2.01 | 6.500 | 20-best | 13.0 | 14.0 | 15.0 | 13.25 |" in md
    assert "| lm_hessian16x | mixed 2.01 | 6.500 | lattice | - | - | - | - |" in md
    assert "tdnn7q_sp" not in md  # Kaldi's eval2000 numbers only next to an eval2000 table
    # A corrupt file is named, with its line.
    (rdir / "lm_hessian16x_nbest_decode_rt03_sw1_fsh_fg" / "scoring" / "hub5_summary.json").write_text("{\n oops")
    from asr_lm_quant.errors import InputError
    with pytest.raises(InputError, match=r"hub5_summary.json, line 2: not valid JSON"):
        res_mod.collect([("lm_hessian16x", q)], ["decode_rt03_sw1_fsh_fg"], rdir, ["nbest"], {})
