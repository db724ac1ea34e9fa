"""Self-normalised LMs: the alpha * (log Z)^2 training term, the weight declared in config.json, and scoring that
skips the normaliser (n-best costs, perplexity, float and packed models), refused for other models unless forced."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan, encode_file, sequences
from asr_lm_quant.lm.files import check_self_normalized, declared_self_norm_alpha, load_lm, save_lm
from asr_lm_quant.lm.loop import evaluate, lm_loss_with_log_z, self_norm_penalty, train_loop
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.lm.optim import build_optimizer
from asr_lm_quant.lm.options import TrainOptions, load_train_config
from asr_lm_quant.lm.ppl import perplexity
from asr_lm_quant.lm.train import train
from asr_lm_quant.quant.packed import load_packed, load_packed_for_inference, save_packed
from asr_lm_quant.quant.plan import QuantPlan, group_names
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.rescore.nnscore import NNScorer
from asr_lm_quant.text.vocab import Vocabulary

FIX = "tests/fixtures/lm"
WORDS = ["<s>", "<unk>"] + [f"w{i}" for i in range(60)]


def tiny_lm(seed=0, tie=True, vocab=None):
    torch.manual_seed(seed)
    vocab = vocab or Vocabulary(WORDS)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48, dropout=0.0,
                                   tie_embeddings=tie)).eval()
    with torch.no_grad():
        model.out.bias.uniform_(-2, 2)  # log Z far from 0, as in any model not trained to be self-normalised
    return model, vocab


def hyps(seed=1, n=40):
    rng = np.random.default_rng(seed)
    base = [f"w{rng.integers(60)}" for _ in range(9)]
    out = [[]]
    for _ in range(n):
        h = list(base[:rng.integers(1, 10)])
        h[rng.integers(len(h))] = f"w{rng.integers(60)}"
        out.append(h)
    return out + [["w3", "not-a-word", "w4"]]


def reference_terms(model, vocab, words):
    """float64, one sentence through the model's own forward: (cost, sum of log Z over the scored positions)."""
    m64 = copy.deepcopy(model).double()
    ids = [vocab.bos] + vocab.encode(words)
    with torch.no_grad():
        logits = m64(torch.tensor([ids]))[0]
    log_z = torch.logsumexp(logits, dim=-1)
    targets = ids[1:] + [vocab.eos]
    cost = sum(float(log_z[i] - logits[i, t]) for i, t in enumerate(targets))
    return cost, float(log_z.sum())


# ---- the training term
def test_loss_terms_and_gradient_match_the_formula():
    model, vocab = tiny_lm()
    model.train()
    seqs = [np.array([vocab.bos] + [2 + (7 * i + j) % 60 for j in range(5 + i)] + [vocab.eos]) for i in range(4)]
    batch = next(iter(BatchPlan(seqs, 200, shuffle=False).iterate(0)))[1]
    ce, log_z, n = lm_loss_with_log_z(model, batch)
    logits = model(batch.inputs).float()
    real = batch.targets != PAD_TARGET
    assert n == int(real.sum()) == len(log_z)
    assert torch.allclose(ce, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1),
                                              ignore_index=PAD_TARGET, reduction="sum"), rtol=1e-6)
    assert torch.allclose(log_z, torch.logsumexp(logits[real], dim=-1), rtol=1e-6)
    alpha = 0.7
    model.zero_grad()
    (ce + self_norm_penalty(log_z, alpha)).backward()
    # d/db_v [log Z - logit_t + alpha (log Z)^2] = p_v (1 + 2 alpha log Z) - [v == t], summed over tokens
    p = torch.softmax(logits[real].detach().double(), dim=-1)
    lz = torch.logsumexp(logits[real].detach().double(), dim=-1)
    expected = (p * (1 + 2 * alpha * lz)[:, None]).sum(0) - F.one_hot(batch.targets[real], len(vocab)).sum(0)
    assert torch.allclose(model.out.bias.grad.double(), expected, atol=1e-4)
    assert float(self_norm_penalty(log_z.detach(), alpha)) == pytest.approx(alpha * float((lz ** 2).sum()), rel=1e-5)


def test_bad_alpha_is_an_error(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"d_model": 32}, "train": {"self_norm_alpha": -1}}))
    with pytest.raises(InputError, match="self_norm_alpha must be >= 0"):
        load_train_config(cfg)


@pytest.fixture(scope="module")
def fixture_data(repo_dir):
    d = repo_dir / FIX
    vocab = Vocabulary.load(d / "words.txt")
    enc_tr, enc_va = encode_file(d / "train.txt", vocab), encode_file(d / "valid.txt", vocab)
    return d, vocab, BatchPlan(sequences(enc_tr, vocab.bos, 48), 512, seed=1), \
        BatchPlan(sequences(enc_va, vocab.bos, 127), 2048, shuffle=False)


def _train_briefly(fixture_data, alpha):
    _, vocab, plan, valid = fixture_data
    torch.manual_seed(2)  # the same ordinary initialisation for both: log Z starts near log(vocabulary size)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48, dropout=0.0))
    opts = TrainOptions(lr=1e-2, warmup_steps=5, max_steps=60, max_epochs=100, self_norm_alpha=alpha, log_every=20)
    train_loop(model, build_optimizer(model, opts), plan, opts)
    return model, evaluate(model, valid, log_z=True)


def test_alpha_keeps_log_z_near_zero(fixture_data):
    plain, r0 = _train_briefly(fixture_data, 0.0)
    normed, r1 = _train_briefly(fixture_data, 0.5)
    assert r0["log_z_mean_abs"] > 1.0  # ordinary training leaves the normaliser wherever it drifts
    assert r1["log_z_mean_abs"] < 0.05 * r0["log_z_mean_abs"]
    assert r1["ppl"] < 1.3 * r0["ppl"]  # at a modest price in perplexity
    # the figures are those perplexity() measures independently on the same text
    d, vocab, _, _ = fixture_data
    p = perplexity(normed, vocab, d / "valid.txt", progress=False)
    assert p["log_z_mean_abs"] == pytest.approx(r1["log_z_mean_abs"], rel=1e-4)
    assert p["ppl"] == pytest.approx(r1["ppl"], rel=1e-4)
    # the shortcut's perplexity differs from the exact one by exp(mean log Z) exactly
    s = perplexity(normed, vocab, d / "valid.txt", progress=False, self_normalized=True)
    assert s["self_normalized"] and "log_z_mean" not in s
    assert np.log(s["ppl"]) == pytest.approx(np.log(p["ppl"]) - p["log_z_mean"], abs=1e-4)


def test_train_command_records_the_weight(repo_dir, tmp_path):
    d = repo_dir / FIX
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64},
                               "train": {"max_steps": 6, "tokens_per_batch": 512, "max_len": 32, "warmup_steps": 2,
                                         "eval_every": 3}}))
    out = tmp_path / "m"
    assert main(["train", "--config", str(cfg), "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"),
                 "--vocab", str(d / "words.txt"), "--out", str(out), "--self-norm-alpha", "0.25"]) == 0
    assert declared_self_norm_alpha(out) == 0.25
    conf = json.loads((out / "config.json").read_text())
    assert conf["train"]["self_norm_alpha"] == 0.25
    res = json.loads((out / "results.json").read_text())
    assert res["valid_log_z_mean_abs"] >= 0 and "valid_log_z_rms" in res
    log = [json.loads(x) for x in (out / "log/train.jsonl").read_text().splitlines()]
    assert any("log_z_mean_abs" in r for r in log if r["event"] == "valid")


# ---- scoring without the normaliser
def test_skipped_normaliser_costs_are_exact_costs_minus_log_z():
    model, vocab = tiny_lm()
    hs = hyps()
    ref = [reference_terms(model, vocab, h) for h in hs]
    ref_cost, ref_log_z = np.array([r[0] for r in ref]), np.array([r[1] for r in ref])
    assert np.abs(ref_log_z).max() > 1  # the check below could not pass by log Z being ~0
    for share, budget, max_row in ((True, 4096, 256), (True, 30, 12), (False, 64, 256)):
        exact = NNScorer(model, vocab, share_prefixes=share, token_budget=budget, max_row=max_row).costs(hs)
        skip = NNScorer(model, vocab, share_prefixes=share, token_budget=budget, max_row=max_row,
                        self_normalized=True)
        fast = skip.costs(hs)
        assert np.abs(exact - ref_cost).max() < 1e-4
        assert np.abs(fast - (ref_cost - ref_log_z)).max() < 1e-4, (share, budget)
        per = skip.word_costs(hs)
        assert all(abs(p.sum() - c) < 1e-6 for p, c in zip(per, fast))
    bf16 = NNScorer(model, vocab, bf16=True, self_normalized=True).costs(hs)  # target logits stay float32
    assert np.abs(bf16 - (ref_cost - ref_log_z)).max() < 0.05


def test_packed_model_gathers_rows_of_codes(tmp_path):
    model, vocab = tiny_lm(seed=5, tie=True)
    plan = quantize_model(model, QuantPlan.from_bits({n: (4, 3, 8)[i % 3] for i, n in
                                                      enumerate(group_names(model, 2))}, per_row=True))
    save_packed(tmp_path / "q", model, plan, vocab, extra={"self_norm_alpha": 0.1})
    dequantized, _, _ = load_packed(tmp_path / "q")
    packed, _, _ = load_packed_for_inference(tmp_path / "q")
    hs = hyps(3)
    ref = [reference_terms(dequantized, vocab, h) for h in hs]
    want = np.array([c - z for c, z in ref])
    got = NNScorer(packed, vocab, self_normalized=True).costs(hs)
    assert np.abs(got - want).max() < 1e-4
    assert declared_self_norm_alpha(tmp_path / "q") == 0.1
    # perplexity's shortcut on the packed model: minus the target logits, computed here from the dense matrix
    text = tmp_path / "t.txt"
    text.write_text("\n".join(" ".join(h) for h in hs[1:6]) + "\n")
    s = perplexity(packed, vocab, text, progress=False, self_normalized=True)
    total = sum(reference_terms(dequantized, vocab, h)[0] - reference_terms(dequantized, vocab, h)[1]
                for h in hs[1:6])
    assert s["cost"] == pytest.approx(total, rel=1e-5)


def test_ppl_and_rescoring_refuse_a_model_not_trained_for_it(tmp_path, capsys):
    model, vocab = tiny_lm()
    save_lm(tmp_path / "plain", model, vocab)
    text = tmp_path / "t.txt"
    text.write_text("w1 w2 w3\nw4 w5\n")
    nbest = tmp_path / "in.tsv"
    nbest.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\t1\tw1 w2\t10\t5\nu1\t2\tw1 w3\t11\t4\n")
    rescore = ["rescore-nbest", "--lm-dir", str(tmp_path / "plain"), "--nbest", str(nbest), "--weight", "1"]
    ppl = ["ppl", "--model", str(tmp_path / "plain"), "--text", str(text)]
    with pytest.raises(InputError, match="not trained with self-normalisation"):
        check_self_normalized(tmp_path / "plain")
    for cmd in (ppl + ["--self-normalized"],
                rescore + ["--self-normalized", "--out-nbest", str(tmp_path / "o.tsv")]):
        assert main(cmd) == 1
        err = capsys.readouterr().err
        assert "config.json" in err and "--force-self-normalized" in err and "Traceback" not in err
    assert not (tmp_path / "o.tsv").exists()
    # forced: it runs, and gives minus the logits
    assert main(rescore + ["--force-self-normalized", "--out-nbest", str(tmp_path / "o.tsv")]) == 0
    out = [line.split("\t") for line in (tmp_path / "o.tsv").read_text().splitlines()[1:]]
    want = [reference_terms(model, vocab, h) for h in (["w1", "w2"], ["w1", "w3"])]
    for row, lm, (cost, log_z) in zip(out, (5.0, 4.0), want):  # no old LM: lm_cost + w * nn
        assert float(row[4]) == pytest.approx(lm + cost - log_z, abs=1e-3)
    # a model that declares its weight: accepted without forcing; exact normalisation stays the default
    shutil.copytree(tmp_path / "plain", tmp_path / "sn")
    conf = json.loads((tmp_path / "sn/config.json").read_text())
    (tmp_path / "sn/config.json").write_text(json.dumps({**conf, "self_norm_alpha": 0.5}))
    assert main(["ppl", "--model", str(tmp_path / "sn"), "--text", str(text), "--self-normalized"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert main(["ppl", "--model", str(tmp_path / "sn"), "--text", str(text)]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert short["self_normalized"] and not exact["self_normalized"]
    assert np.log(short["ppl"]) == pytest.approx(np.log(exact["ppl"]) - exact["log_z_mean"], abs=1e-4)
    (tmp_path / "sn/config.json").write_text(json.dumps({**conf, "self_norm_alpha": "lots"}))
    assert main(["ppl", "--model", str(tmp_path / "sn"), "--text", str(text), "--self-normalized"]) == 1
    assert "self_norm_alpha" in capsys.readouterr().err
    assert load_lm(tmp_path / "sn")[0].cfg == model.cfg  # the key does not disturb loading
