"""recipes/swbd/run.sh end to end on a miniature Kaldi s5c directory (stage 0 text, stage 1 training)."""

import gzip
import json
import os
import shutil
import subprocess

import pytest

# Utterance ids as s5c names them; conversations interleaved and out of time order on purpose.
TRAIN_NODEV = """\
sw02001-A_000098-001156 hi um yeah i'd like to talk about how you dress for work
sw02001-A_001980-002131 um-hum
sw02001-B_000002-000118 [noise] okay
sw02005-A_000400-000500 i think it's [laughter] great
sw02005-A_000100-000200 well
"""
TRAIN_DEV = """\
sw02054-A_000000-000500 so what do you think
sw02054-B_000600-000900 i don't know
"""
EVAL2000 = """\
en_4156-A_030185-030248 he is a police officer
sw_4390-A_000100-000200 oh really
"""
FISHER = ["and uh i think mhm that's right", "hmm okay mm yeah"]
VOCAB = sorted(set(" ".join(l.split(" ", 1)[1] for l in (TRAIN_NODEV + TRAIN_DEV).splitlines()).split()
                   + "and uh that's right hum um he is a".split()))


def make_s5c(root):
    for name, text in (("train_nodev", TRAIN_NODEV), ("train_dev", TRAIN_DEV), ("eval2000", EVAL2000)):
        (root / "data" / name).mkdir(parents=True)
        (root / "data" / name / "text").write_text(text)
    (root / "data" / "local" / "lm" / "fisher").mkdir(parents=True)
    with gzip.open(root / "data" / "local" / "lm" / "fisher" / "text1.gz", "wt") as f:
        f.write("\n".join(FISHER) + "\n")
    (root / "data" / "lang").mkdir(parents=True)
    syms = ["<eps>"] + VOCAB + ["#0", "<s>", "</s>"]
    (root / "data" / "lang" / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(syms)))


@pytest.fixture
def recipe(tmp_path, repo_dir):
    """A copy of recipes/swbd (outputs go to tmp, not into the repository), linked to the toolkit."""
    r = tmp_path / "swbd"
    r.mkdir()
    for f in ("run.sh", "path.sh", "cmd.sh"):
        shutil.copy(repo_dir / "recipes" / "swbd" / f, r / f)
    (r / "steps").symlink_to(repo_dir / "steps")
    (r / "local").symlink_to(repo_dir / "local" / "swbd")
    (r / "conf").mkdir()
    (r / "conf" / "lm_tiny.json").write_text(json.dumps({
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "dropout": 0.0},
        "train": {"max_epochs": 1, "tokens_per_batch": 64, "warmup_steps": 1, "log_every": 1,
                  "checkpoint_every": 10}}))
    return r


def run(recipe, repo_dir, *args):
    env = dict(os.environ, ASR_LM_QUANT_ROOT=str(repo_dir))
    env.pop("ASR_LM_QUANT_QUEUE", None)
    return subprocess.run(["./run.sh", *args], capture_output=True, text=True, cwd=recipe, env=env, timeout=300)


def test_stage0_from_s5c(recipe, repo_dir, tmp_path):
    s5c = tmp_path / "s5c"
    make_s5c(s5c)
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--stop-stage", "0")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Stage 0" in p.stdout and "Stage 1" not in p.stdout
    lm = recipe / "data" / "lm"
    train = (lm / "train.txt").read_text().splitlines()
    assert len(train) == 3 * 5 + 2  # Switchboard three times, Fisher once
    assert "um-hum" in train and "hum okay um yeah" in train  # Fisher hesitations mapped
    assert (lm / "valid.txt").read_text().splitlines() == ["so what do you think", "i don't know"]
    assert len((lm / "test.txt").read_text().splitlines()) == 2
    words = [line.split()[0] for line in (lm / "words.txt").read_text().splitlines()]
    assert "<unk>" in words and "<s>" in words and "<eps>" not in words and "#0" not in words
    assert (lm / "log" / "prepare_text.log").exists()
    # Re-running the stage leaves finished text alone.
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--stop-stage", "0")
    assert p.returncode == 0 and "skipping" in p.stdout


def test_stage0_reports_what_s5c_lacks(recipe, repo_dir, tmp_path):
    s5c = tmp_path / "s5c"
    make_s5c(s5c)
    (s5c / "data" / "local" / "lm" / "fisher" / "text1.gz").unlink()
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--stop-stage", "0")
    assert p.returncode != 0
    assert "data/local/lm/fisher/text1.gz" in p.stderr and "swbd1_train_lms.sh" in p.stderr
    assert not (recipe / "data" / "lm" / "train.txt").exists()
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--stop-stage", "0", "--use-fisher", "false")
    assert p.returncode == 0, p.stdout + p.stderr
    assert len((recipe / "data" / "lm" / "train.txt").read_text().splitlines()) == 15


def test_options_and_help(recipe, repo_dir):
    p = run(recipe, repo_dir, "--help")
    assert p.returncode == 0 and "--kaldi-swbd-dir" in p.stderr
    p = run(recipe, repo_dir, "--stop-stage", "0")
    assert p.returncode != 0 and "needs --kaldi-swbd-dir" in p.stderr
    p = run(recipe, repo_dir, "--kaldi-swbd", "x")
    assert p.returncode != 0 and "invalid option --kaldi-swbd" in p.stderr
    p = run(recipe, repo_dir, "--stage", "1", "--stop_stage", "1")
    assert p.returncode != 0 and "run stage 0 first" in p.stderr


@pytest.mark.slow
def test_stage1_trains_and_reports_perplexity(recipe, repo_dir, tmp_path):
    s5c = tmp_path / "s5c"
    make_s5c(s5c)
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--lm-conf", "conf/lm_tiny.json", "--stop-stage", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    lm = recipe / "exp" / "lm"
    assert (lm / "model.safetensors").exists() and (lm / "words.txt").exists()
    for s in ("valid", "test"):
        ppl = json.loads((lm / f"ppl_{s}.json").read_text())["ppl"]
        assert 1 < ppl < 10 * len(VOCAB)
    assert "Perplexity (with end-of-sentence): valid " in p.stdout
    assert "# Ended (code 0)" in (lm / "log" / "train.log").read_text()


def test_stage0_from_ldc_layouts(recipe, repo_dir):
    ldc = repo_dir / "tests" / "fixtures" / "text" / "ldc"
    args = ["--swbd-trans", str(ldc / "swb_ms98_transcriptions"), "--eval2000", str(ldc / "LDC2002T43"),
            "--fisher-trans", f"{ldc / 'fe_03_p1_tran'} {ldc / 'fe_03_p2_tran'}", "--dev-utterances", "2",
            "--stop-stage", "0"]
    p = run(recipe, repo_dir, *args)
    assert p.returncode == 0, p.stdout + p.stderr
    lm = recipe / "data" / "lm"
    assert len((lm / "valid.txt").read_text().splitlines()) == 2
    stats = json.loads((lm / "stats.json").read_text())
    log = (lm / "log" / "prepare_text.log").read_text()
    assert log.startswith(f"# asr-lm-quant prepare-text ldc-swbd {ldc / 'swb_ms98_transcriptions'} --eval2000 ")
    assert log.count("--fisher ") == 2
    # Without Fisher the training text shrinks by exactly the Fisher sentences.
    p = run(recipe, repo_dir, *args, "--use-fisher", "false", "--text-dir", "data/lm_nofisher")
    assert p.returncode == 0, p.stdout + p.stderr
    swbd_only = len((recipe / "data" / "lm_nofisher" / "train.txt").read_text().splitlines())
    assert swbd_only < stats["train"]["sentences"]
    assert swbd_only % 3 == 0  # Switchboard three times


def write_kaldi_transformer(path, ntoken, d=16, heads=2, ff=32, layers=1):
    """A state_dict with the parameter names and shapes of Kaldi's pytorchnn TransformerModel."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d, heads, ff, 0.0, "gelu")
    encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    from asr_lm_quant.lm.model import sinusoidal_positions

    emb = torch.empty(ntoken, d).uniform_(-0.1, 0.1)
    sd = {"encoder.weight": emb, "pos_encoder.pe": sinusoidal_positions(5000, d).unsqueeze(1),
          "decoder.weight": emb, "decoder.bias": torch.zeros(ntoken)}
    sd.update({f"transformer_encoder.{k}": v for k, v in encoder.state_dict().items()})
    torch.save(sd, path)


def write_kaldi_lstm(path, ntoken, d=16, layers=2):
    """A state_dict with the parameter names and shapes of Kaldi's pytorchnn RNNModel (LSTM, untied)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    sd = {"encoder.weight": torch.empty(ntoken, d).uniform_(-0.1, 0.1),
          "decoder.weight": torch.empty(ntoken, d).uniform_(-0.1, 0.1), "decoder.bias": torch.zeros(ntoken)}
    sd.update({f"rnn.{k}": v for k, v in nn.LSTM(d, d, layers).state_dict().items()})
    torch.save(sd, path)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["Transformer", "LSTM"])
def test_stage1_imports_a_kaldi_pytorchnn_model(recipe, repo_dir, tmp_path, kind):
    s5c = tmp_path / "s5c"
    make_s5c(s5c)
    (recipe / "data" / "lm").mkdir(parents=True)  # stage 0's output, as far as stage 1 needs it
    (recipe / "data" / "lm" / "valid.txt").write_text("so what do you think\n")
    (recipe / "data" / "lm" / "test.txt").write_text("he is a police officer\noh really\n")
    # What Kaldi's local/pytorchnn/data_prep.sh leaves: data/lang/words.txt plus <unk>.
    (s5c / "data" / "pytorchnn").mkdir()
    lang = (s5c / "data" / "lang" / "words.txt").read_text()
    n = len(lang.splitlines())
    (s5c / "data" / "pytorchnn" / "words.txt").write_text(lang + f"<unk> {n}\n")
    (write_kaldi_transformer if kind == "Transformer" else write_kaldi_lstm)(tmp_path / "model.pt", n + 1)
    p = run(recipe, repo_dir, "--kaldi-swbd-dir", str(s5c), "--kaldi-nnlm", str(tmp_path / "model.pt"),
            "--kaldi-nnlm-heads", "2", "--kaldi-nnlm-type", kind, "--stage", "1", "--stop-stage", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    lm = recipe / "exp" / "lm"
    assert f"import Kaldi's {kind} LM" in p.stdout
    assert (lm / "log" / "import.log").read_text().startswith(f"# asr-lm-quant import-kaldi --model {kind} ")
    assert json.loads((lm / "config.json").read_text())["model"].get("arch", "transformer") == kind.lower()
    assert not (lm / "log" / "train.log").exists()
    words = [line.split()[0] for line in (lm / "words.txt").read_text().splitlines()]
    assert len(words) == n + 1 and words[-1] == "<unk>"
    ppl = json.loads((lm / "ppl_test.json").read_text())["ppl"]
    assert 1 < ppl < 10 * (n + 1)  # an untrained model: about uniform over the vocabulary


def _stage1_outputs(recipe):
    """What stages 0 and 1 leave, as far as stage 2 needs it: texts and a tiny LM in exp/lm."""
    import torch

    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.text.vocab import Vocabulary

    text = recipe / "data" / "lm"
    text.mkdir(parents=True)
    lines = [ln.split(" ", 1)[1] for ln in TRAIN_NODEV.splitlines()]
    (text / "train.txt").write_text("\n".join(lines * 4) + "\n")
    (text / "valid.txt").write_text("so what do you think\n")
    (text / "test.txt").write_text("he is a police officer\n")
    torch.manual_seed(0)
    vocab = Vocabulary(["<s>", "<unk>"] + VOCAB)
    save_lm(recipe / "exp" / "lm", TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1,
                                                            n_heads=2, d_ff=16, dropout=0.0)), vocab)


def test_stage2_builds_systems_in_parallel_and_reports_failures(recipe, repo_dir):
    _stage1_outputs(recipe)
    systems = {"defaults": {"tokens_per_batch": 64, "finetune": {"steps": 2, "warmup": 1}},
               "systems": [{"name": "ptq8", "method": "ptq", "bits": 8}, {"name": "ptq4", "method": "ptq", "bits": 4},
                           {"name": "ste2", "method": "ste", "bits": 2}]}
    (recipe / "conf" / "quant.json").write_text(json.dumps(systems))
    p = run(recipe, repo_dir, "--stage", "2", "--stop-stage", "2", "--quant-conf", "conf/quant.json",
            "--quant-nj", "2", "--quant-threads", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    for name, bits in (("ptq8", 8), ("ptq4", 4), ("ste2", 2)):
        res = json.loads((recipe / "exp" / f"lm_{name}" / "results.json").read_text())
        assert res["avg_bits"] == bits
        assert (recipe / "exp" / f"lm_{name}" / "log" / "quantize.log").exists()
    # A system that fails stops none of the others; the stage fails at the end and names it.
    systems["systems"] = [{"name": "bad", "method": "ste", "bits": 40}, {"name": "ptq2", "method": "ptq", "bits": 2}]
    (recipe / "conf" / "quant.json").write_text(json.dumps(systems))
    p = run(recipe, repo_dir, "--stage", "2", "--stop-stage", "2", "--quant-conf", "conf/quant.json",
            "--quant-nj", "2")
    assert p.returncode != 0 and "quantizing bad failed" in p.stderr, p.stdout + p.stderr
    assert (recipe / "exp" / "lm_ptq2" / "results.json").exists()
    p = run(recipe, repo_dir, "--stage", "2", "--stop-stage", "2", "--quant-nj", "0")
    assert p.returncode != 0 and "--quant-nj must be a positive integer" in p.stderr
