"""The fused output layer + cross entropy: the same loss and gradients as the logits, without them."""

import pytest
import torch
import torch.nn.functional as F

from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.lm.output_loss import linear_cross_entropy


def _case(seed=0, n=53, d=12, v=97, pad=9):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (0.3 * torch.randn(v, d, generator=g)).requires_grad_()
    b = (0.1 * torch.randn(v, generator=g)).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    t[torch.randperm(n, generator=g)[:pad]] = -100
    return h, w, b, t


def _reference(h, w, b, t):
    return F.cross_entropy(h @ w.t() + b, t, ignore_index=-100, reduction="sum")


@pytest.mark.parametrize("chunk", [1, 7, 53, 256])
def test_loss_and_gradients_equal_the_plain_computation(chunk):
    h, w, b, t = _case()
    ref = _reference(h, w, b, t)
    ref_grads = torch.autograd.grad(ref * 0.37, (h, w, b))
    got = linear_cross_entropy(h, w, b, t, chunk_rows=chunk)
    grads = torch.autograd.grad(got * 0.37, (h, w, b))
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)
    assert grads[0][t == -100].abs().max() == 0  # padding positions get no gradient


def test_without_gradients_and_all_padding():
    h, w, b, t = _case(seed=1)
    with torch.no_grad():
        assert linear_cross_entropy(h, w, b, t, chunk_rows=5).item() == pytest.approx(_reference(h, w, b, t).item(),
                                                                                     rel=1e-6)
    assert linear_cross_entropy(h, w, None, t).item() == pytest.approx(_reference(h, w, torch.zeros(97), t).item(),
                                                                       rel=1e-6)
    empty = linear_cross_entropy(h, w, b, torch.full_like(t, -100))
    assert empty.item() == 0.0
    empty.backward()
    assert h.grad.abs().max() == 0


def test_bf16_autocast_close_to_the_plain_bf16_loss():
    h, w, b, t = _case(seed=2, n=64, d=32, v=200, pad=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.cross_entropy((h @ w.t() + b).float(), t, reduction="sum")
        got = linear_cross_entropy(h, w, b, t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), rel=2e-3)
    gh, = torch.autograd.grad(got, (h,))
    rh, = torch.autograd.grad(_reference(h, w, b, t), (h,))
    assert float((gh - rh).norm() / rh.norm()) < 2e-2


@pytest.mark.parametrize("make", [
    lambda: TransformerLM(LMConfig(vocab_size=41, d_model=16, n_layers=2, n_heads=2, d_ff=24, dropout=0.0)),
    lambda: TransformerLM(LMConfig(vocab_size=41, d_model=16, n_layers=1, n_heads=2, d_ff=24, dropout=0.0,
                                   tie_embeddings=False)),
    lambda: LSTMLM(LSTMConfig(vocab_size=41, d_embed=16, d_hidden=16, n_layers=1, dropout=0.0)),
])
def test_models_give_the_logits_loss_with_targets(make):
    torch.manual_seed(0)
    model = make()
    tokens = torch.randint(0, 41, (3, 9))
    targets = torch.randint(0, 41, (3, 9))
    targets[2, 5:] = -100
    logits = model(tokens)
    ref = F.cross_entropy(logits.reshape(-1, 41), targets.reshape(-1), ignore_index=-100, reduction="sum")
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    got = model(tokens, targets=targets)
    grads = torch.autograd.grad(got, list(model.parameters()))
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-6)


def test_packed_output_layer_gives_the_logits_loss(tmp_path):
    """A model kept packed (``load_packed_for_inference``) takes the fused loss too (its output matrix decoded
    for the call): the same sum as the cross entropy of its own logits; and perplexity evaluation, which goes
    through it, agrees."""
    from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
    from asr_lm_quant.quant.packed import load_packed_for_inference, save_packed
    from asr_lm_quant.quant.plan import QuantPlan, group_names
    from asr_lm_quant.quant.ptq import quantize_model
    from asr_lm_quant.quant.train import evaluate_ppl
    from asr_lm_quant.text.vocab import Vocabulary

    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(60)])
    torch.manual_seed(3)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48,
                                   dropout=0.0)).eval()
    plan = quantize_model(model, QuantPlan.from_bits({n: (4, 3, 8)[i % 3] for i, n in
                                                      enumerate(group_names(model, 2))}, per_row=True))
    save_packed(tmp_path / "q", model, plan, vocab)
    packed, _, _ = load_packed_for_inference(tmp_path / "q")
    assert not isinstance(packed.out, torch.nn.Linear)
    tokens = torch.randint(0, len(vocab), (3, 11))
    targets = torch.randint(0, len(vocab), (3, 11))
    targets[1, 4:] = -100
    with torch.no_grad():
        logits = packed(tokens)
        ref = F.cross_entropy(logits.reshape(-1, len(vocab)), targets.reshape(-1), ignore_index=-100,
                              reduction="sum")
        got = packed(tokens, targets=targets)
    assert got.item() == pytest.approx(ref.item(), rel=1e-5)
    text = tmp_path / "t.txt"
    text.write_text("w1 w2 w3 w4\nw5 w6\nw7 w8 w9 w10 w11\n")
    batches = BatchPlan(sequences(encode_file(text, vocab), vocab.index["<s>"], 8), 64, seed=0, shuffle=False)
    ppl = evaluate_ppl(packed, batches)
    total = 0.0
    with torch.no_grad():
        for _, b in batches.iterate(0):
            lg = packed(b.inputs)
            total += float(F.cross_entropy(lg.reshape(-1, len(vocab)), b.targets.reshape(-1), ignore_index=-100,
                                           reduction="sum"))
    assert ppl["tokens"] == 3 + 4 + 2 + 5 and ppl["loss"] == pytest.approx(total / ppl["tokens"], rel=1e-5)
