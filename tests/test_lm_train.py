import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.checkpoint import (latest_checkpoint, load_checkpoint, optimizer_from_tensors,
                                        optimizer_to_tensors, read_progress, read_state, save_checkpoint)
from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
from asr_lm_quant.lm.files import load_lm
from asr_lm_quant.lm.loop import StepSpec, fit, train_loop
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.lm.optim import build_optimizer, lr_at, warmup_cosine
from asr_lm_quant.lm.options import TrainOptions, load_train_config
from asr_lm_quant.lm.ppl import perplexity
from asr_lm_quant.lm.train import train
from asr_lm_quant.text.vocab import Vocabulary

FIX = "tests/fixtures/lm"
TINY = {"model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_ff": 64, "dropout": 0.1},
        "train": {"max_epochs": 2, "tokens_per_batch": 1024, "max_len": 48, "lr": 0.003, "warmup_steps": 4,
                  "checkpoint_every": 5, "log_every": 4, "keep_checkpoints": 3}}


@pytest.fixture
def data(repo_dir, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY))
    d = repo_dir / FIX
    return cfg, d / "train.txt", d / "valid.txt", d / "words.txt"


def weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_resume_reaches_same_weights(data, tmp_path):
    cfg, tr, va, words = data
    full = train(cfg, tr, va, words, tmp_path / "a")
    assert full["done"] and full["steps"] > 10 and full["valid_ppl"] < 685
    # interrupted twice; the second time the newest checkpoint is lost, as if killed between checkpoints
    assert train(cfg, tr, va, words, tmp_path / "b", max_steps_this_run=3) == {"done": False, "step": 3}
    assert train(cfg, tr, va, words, tmp_path / "b", max_steps_this_run=9) == {"done": False, "step": 12}
    ck = tmp_path / "b/checkpoints"
    shutil.rmtree(ck / "ckpt-00000012")
    (ck / "latest").write_text("ckpt-00000010\n")
    resumed = train(cfg, tr, va, words, tmp_path / "b")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)
    assert resumed["valid_ppl"] == pytest.approx(full["valid_ppl"], rel=1e-9)
    # the result is a normal model directory, and its perplexity is the one training reported
    model, vocab = load_lm(tmp_path / "a")
    r = perplexity(model, vocab, va, progress=False)
    assert r["ppl"] == pytest.approx(full["valid_ppl"], rel=1e-4)
    log = [json.loads(line) for line in (tmp_path / "b/log/train.jsonl").read_text().splitlines()]
    assert {"start", "train", "valid", "stop"} <= {rec["event"] for rec in log}
    assert all(rec["tokens_per_s"] > 0 for rec in log if rec["event"] == "train")
    assert (tmp_path / "b/log/curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # re-running a finished run does nothing; changing the configuration is refused
    assert train(cfg, tr, va, words, tmp_path / "a")["steps"] == full["steps"]
    with pytest.raises(InputError, match="differ from the run already"):
        train(cfg, tr, va, words, tmp_path / "b", overrides={"lr": 0.01})


def test_early_stopping_and_plateau(data, tmp_path):
    cfg, tr, va, words = data
    r = train(cfg, tr, va, words, tmp_path / "o", overrides={
        "lr": 3.0, "schedule": "plateau", "plateau_factor": 0.5, "max_epochs": 30, "patience": 2,
        "warmup_steps": 0, "eval_every": 2, "clip_norm": 0.0})
    assert r["stop_reason"] in ("early_stopping", "min_lr")
    hist = [h["ppl"] for h in r["valid_history"]]
    best = min(range(len(hist)), key=hist.__getitem__)
    assert r["best_step"] == r["valid_history"][best]["step"]
    assert r["valid_ppl"] == pytest.approx(hist[best], rel=1e-6)  # the kept model is the best one
    assert r["epochs"] < 30


def test_fit_runs_the_step_spec_hooks_and_stops_when_told(data):
    cfg, tr, va, words = data
    vocab = Vocabulary.load(words)
    model_cfg, opts = load_train_config(cfg)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), **model_cfg))
    plan = BatchPlan(sequences(encode_file(tr, vocab), vocab.bos, opts.max_len), opts.tokens_per_batch)
    target = model.layers[0].ff.fc1.weight
    seen, lrs, saved = [], [], []
    opt = build_optimizer(model, opts)

    def loss(batch, step):  # a penalty beside the LM loss, as quantization methods add theirs
        lm = model(batch.inputs, targets=batch.targets)
        return lm / batch.tokens + 100.0 * target.pow(2).sum(), lm, batch.tokens

    def after_step(step):
        seen.append(step)
        lrs.append([g["lr"] for g in opt.param_groups])

    def on_step(step, batch, out):
        assert out["tokens"] == batch.tokens and out["grad_norm"] is not None
        return step % 2 == 1, step == 5

    spec = StepSpec(opt, loss, lambda step: [0.01 * (step + 1), 0.02], list(model.parameters()), 1.0, after_step)
    before = target.detach().norm().item()
    nxt = fit(spec, (b for _, b in plan.iterate(0)), 3, on_step, save=saved.append)
    # steps 3..5; checkpoints (numbered by the steps done) after steps 3 and 5
    assert nxt == 6 and seen == [3, 4, 5] and saved == [4, 6]
    assert lrs == [[pytest.approx(0.04), 0.02], [pytest.approx(0.05), 0.02], [pytest.approx(0.06), 0.02]]
    assert target.detach().norm().item() < before  # the penalty pulled the weights down


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizer_state_roundtrip(name):
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=10, d_model=8, n_heads=2, d_ff=8, n_layers=1))
    opts = TrainOptions(optimizer=name)
    opt = build_optimizer(model, opts)
    model(torch.randint(0, 10, (2, 5))).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    meta = json.loads(json.dumps(meta))
    opt2 = build_optimizer(model, opts)
    optimizer_from_tensors(opt2, tensors, meta)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
                                  for g in s2["param_groups"]]
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            torch.testing.assert_close(v, s2["state"][pid][k], atol=0, rtol=0)


def test_one_checkpoint_format(tmp_path):
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=10, d_model=8, n_heads=2, d_ff=8, n_layers=1))
    opt = build_optimizer(model, TrainOptions())
    model(torch.randint(0, 10, (2, 5))).sum().backward()
    opt.step()
    extra = {"scale/w": torch.tensor([0.5, 2.0]), "rng": torch.get_rng_state()}
    root = tmp_path / "checkpoints"
    for n in (3, 7):
        save_checkpoint(root, n, {"step": n, "note": "x"}, model=model, optimizer=opt, tensors=extra, keep=2)
    save_checkpoint(root, 8, {"step": 8}, tensors=extra, model_from=root / "ckpt-00000007", keep=2)
    path = latest_checkpoint(root)
    assert path.name == "ckpt-00000008" and (root / "latest").read_text() == "ckpt-00000008\n"
    assert sorted(p.name for p in root.iterdir()) == ["ckpt-00000007", "ckpt-00000008", "latest"]
    # safetensors and JSON only: nothing to unpickle
    assert sorted(p.name for p in path.iterdir()) == ["model.safetensors", "progress.json", "state.safetensors"]
    assert read_progress(path) == {"step": 8}
    assert read_state(path).keys() == extra.keys()
    torch.testing.assert_close(read_state(path)["scale/w"], extra["scale/w"])
    fresh = TransformerLM(LMConfig(vocab_size=10, d_model=8, n_heads=2, d_ff=8, n_layers=1))
    opt2 = build_optimizer(fresh, TrainOptions())
    assert load_checkpoint(root / "ckpt-00000007", fresh, opt2) == {"step": 7, "note": "x"}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, atol=0, rtol=0)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    (path / "state.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="cannot restore checkpoint"):
        read_state(path)
    (root / "latest").write_text("ckpt-00000099\n")
    with pytest.raises(InputError, match="missing or incomplete"):
        latest_checkpoint(root)


def test_schedules():
    o = TrainOptions(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, 110, o) == pytest.approx(0.1)
    assert lr_at(9, 110, o) == pytest.approx(1.0)
    assert lr_at(60, 110, o) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(110, 110, o) == pytest.approx(0.1)
    o = TrainOptions(lr=1.0, warmup_steps=0, schedule="plateau")
    assert lr_at(50, 100, o, plateau_scale=0.25) == 0.25
    o = TrainOptions(lr=1.0, warmup_steps=4, schedule="inv_sqrt")
    assert lr_at(15, 100, o) == pytest.approx(0.5)


def test_one_cosine_for_lm_training_and_fine_tuning():
    # LM training: the cosine starts after the warm-up and ends at min_lr_ratio
    o = TrainOptions(lr=2.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    for step in (0, 5, 10, 37, 109, 110):
        assert lr_at(step, 110, o) == warmup_cosine(2.0, step, 110, 10, 0.1)
    assert warmup_cosine(2.0, 60, 110, 10, 0.1) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    # fine-tuning: the cosine runs from step 0 under the warm-up, to 0 at the end
    assert warmup_cosine(1.0, 0, 100, 10, decay_start=0) == pytest.approx(0.1)
    assert warmup_cosine(1.0, 50, 100, 10, decay_start=0) == pytest.approx(0.5)
    assert warmup_cosine(1.0, 5, 100, 0, decay_start=0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05)))
    assert warmup_cosine(1.0, 100, 100, 10, decay_start=0) == 0.0


def test_config_errors(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"model": {"d_model": 30, "n_heads": 4}}')
    with pytest.raises(InputError, match="key 'model'.*divisible"):
        load_train_config(p)
    p.write_text('{"model": {}, "train": {"optimiser": "sgd"}}')
    with pytest.raises(InputError, match="key 'train'.*optimiser"):
        load_train_config(p)
    p.write_text('{"model": {},\n "train": }')
    with pytest.raises(InputError, match="line 2"):
        load_train_config(p)


def test_shipped_configs(repo_dir):
    for path in sorted((repo_dir / "recipes").glob("*/conf/lm*.json")):
        model, opts = load_train_config(path)
        assert model and opts
    model, opts = load_train_config(repo_dir / "recipes/swbd/conf/lm_swbd.json")
    assert (model["d_model"], model["d_ff"], model["n_layers"], model["n_heads"], model["norm"]) == \
        (512, 512, 6, 8, "post")
    assert opts.optimizer == "sgd" and opts.schedule == "plateau"
    assert load_train_config(repo_dir / "recipes/swbd/conf/lm_swbd_large.json")[0]["n_layers"] == 12


def test_cli_train_and_ppl(data, tmp_path, capsys):
    cfg, tr, va, words = data
    out = tmp_path / "m"
    assert main(["train", "--config", str(cfg), "--train", str(tr), "--valid", str(va), "--vocab", str(words),
                 "--out", str(out), "--max-epochs", "1", "--set", "tokens_per_batch=2048"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert json.loads((out / "train_config.json").read_text())["train"]["tokens_per_batch"] == 2048
    capsys.readouterr()
    assert main(["ppl", "--model", str(out), "--text", str(va), "--json", str(tmp_path / "p.json")]) == 0
    r = json.loads((tmp_path / "p.json").read_text())
    assert r["ppl"] == pytest.approx(res["valid_ppl"], rel=1e-4)
    assert r["ppl_no_eos"] != r["ppl"] and r["oov"] == res["valid_oov"] > 0
    assert main(["ppl", "--model", str(tmp_path / "none"), "--text", str(va)]) == 1
    assert "model config does not exist" in capsys.readouterr().err


def test_epochs_with_different_batch_counts(data):
    # shuffling then bucketing can give each epoch a different number of batches; every one is trained on
    cfg, tr, va, words = data
    vocab = Vocabulary.load(words)
    model_cfg, opts = load_train_config(cfg)
    seqs = sequences(encode_file(tr, vocab), vocab.bos, opts.max_len)
    for seed in range(100):
        plan = BatchPlan(seqs, 700, seed=seed, bucket_factor=1)
        counts = [plan.num_batches(e) for e in range(3)]
        if len(set(counts)) > 1 and counts[1] < counts[0]:
            break
    else:
        pytest.skip("no seed gives differing epoch lengths")
    opts.max_epochs = 3
    model = TransformerLM(LMConfig(vocab_size=len(vocab), **model_cfg))
    p = train_loop(model, build_optimizer(model, opts), plan, opts, valid=BatchPlan(seqs[:20], 700, shuffle=False))
    assert p["done"] and p["stop_reason"] == "max_epochs"
    assert p["step"] == sum(counts) and p["epoch"] == 3
    assert [v["step"] for v in p["valid"]] == [counts[0], counts[0] + counts[1], sum(counts)]


def test_positional_table_grows_on_demand_and_is_no_buffer():
    # The table starts small (a max_len-row table would outweigh a small quantized model), grows to what a
    # sequence needs with the same values, and is not a buffer that data-parallel training would broadcast.
    from asr_lm_quant.lm.model import LMConfig, TransformerLM, sinusoidal_positions
    m = TransformerLM(LMConfig(vocab_size=20, d_model=8, n_layers=1, n_heads=2, d_ff=8, max_len=1000)).eval()
    assert m.positions(10).shape == (10, 8) and m._pe.shape[0] == 128
    with torch.inference_mode():
        m(torch.zeros(1, 300, dtype=torch.long))
    assert m._pe.shape[0] >= 300
    assert torch.equal(m.positions(300), sinusoidal_positions(1000, 8)[:300])
    assert "pe" not in dict(m.named_buffers()) and "_pe" not in m.state_dict()
    with pytest.raises(ValueError, match="beyond max_len"):
        m.positions(1001)
