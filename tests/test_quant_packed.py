import numpy as np
import pytest
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.packed import (PACKED, inspect_packed, load_any_lm, load_packed, pack_codes, save_packed,
                                       unpack_codes)
from asr_lm_quant.quant.plan import QuantPlan, weight_groups
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.text.vocab import Vocabulary


def vocab_of(n):
    return Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(n - 2)])


def small(vocab=50, layers=2):
    torch.manual_seed(0)
    return TransformerLM(LMConfig(vocab_size=vocab, d_model=16, n_layers=layers, n_heads=2, d_ff=24, dropout=0.0))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 12])
def test_bit_packing_round_trip(bits):
    rng = np.random.default_rng(bits)
    k = 1 if bits == 1 else 2 ** (bits - 1) - 1
    codes = torch.from_numpy(rng.integers(-k, k + 1, size=1001).astype(np.int32))
    if bits == 1:
        codes = torch.where(codes >= 0, 1, -1).to(torch.int32)
    buf = pack_codes(codes, bits)
    assert len(buf) == -(-1001 * bits // 8)
    assert torch.equal(unpack_codes(buf, bits, 1001), codes)


def test_packed_round_trip_bit_identical_mixed(tmp_path):
    m = small()
    bits = {n: b for n, b in zip(weight_groups(m), [1, 2, 3, 4, 8, 32, 2, 4, 1])}
    plan = quantize_model(m, QuantPlan.from_bits(bits, per_row=False))
    plan.groups["layers.0.attn.in_proj.weight"].per_row = False
    save_packed(tmp_path / "q", m, plan, vocab_of(50))
    m2, v2, plan2 = load_packed(tmp_path / "q")
    assert plan2 == plan
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randint(0, 50, (2, 7))
    assert torch.equal(m.eval()(x), m2(x))
    # load_any_lm reads both kinds of directory
    save_lm(tmp_path / "plain", small(), vocab_of(50))
    assert isinstance(load_any_lm(tmp_path / "plain")[0], TransformerLM)
    assert torch.equal(load_any_lm(tmp_path / "q")[0].embed.weight, m.embed.weight)


def test_per_row_round_trip(tmp_path):
    m = small()
    plan = quantize_model(m, QuantPlan.uniform(m, 2, per_row=True))
    save_packed(tmp_path / "q", m, plan, vocab_of(50))
    m2, _, _ = load_packed(tmp_path / "q")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


def test_unquantized_model_is_refused(tmp_path):
    m = small()
    plan = quantize_model(small(), QuantPlan.uniform(m, 4))
    with pytest.raises(ValueError, match="not on its 4-bit table"):
        save_packed(tmp_path / "q", m, plan, vocab_of(50))
    assert not (tmp_path / "q" / PACKED).exists()


def test_truncated_and_corrupt_files(tmp_path):
    m = small()
    plan = quantize_model(m, QuantPlan.uniform(m, 2))
    save_packed(tmp_path / "q", m, plan, vocab_of(50))
    path = tmp_path / "q" / PACKED
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 100])
    with pytest.raises(InputError, match="truncated|corrupt"):
        load_packed(tmp_path / "q")
    path.write_bytes(data[:5])
    with pytest.raises(InputError, match="truncated"):
        load_packed(tmp_path / "q")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match="checksum"):
        load_packed(tmp_path / "q")


@pytest.mark.slow
def test_switchboard_shape_overhead_under_2_percent(tmp_path):
    # Kaldi's pytorchnn Switchboard Transformer: 6 layers, 512 dims, 8 heads, nhid 512, ~30k words, tied
    torch.manual_seed(0)
    m = TransformerLM(LMConfig(vocab_size=30000, d_model=512, n_layers=6, n_heads=8, d_ff=512, dropout=0.0))
    groups = list(weight_groups(m))
    cases = {"uniform-1": {n: 1 for n in groups}}  # 1 bit: the smallest ideal size, so the largest overhead
    for name, bits in cases.items():
        plan = QuantPlan.from_bits(bits)
        for n, p in weight_groups(m).items():  # put weights on the tables cheaply (codes * fixed scale)
            with torch.no_grad():
                k = 1 if bits[n] == 1 else 2 ** (bits[n] - 1) - 1
                c = torch.randint(-k, k + 1, p.shape)
                if bits[n] == 1:
                    c = torch.where(c >= 0, 1, -1)
                p.copy_(c.float() * 0.01)
            plan.set_scale(n, torch.tensor([0.01]))
        save_packed(tmp_path / name, m, plan, vocab_of(30000))
        rep = inspect_packed(tmp_path / name)
        assert 0 < rep["overhead"] < 0.02, (name, rep["overhead"])
        # the compression quantize reports: the 32-bit model over the file; the ideal one is labelled so
        assert rep["compression"] == rep["fp32_bytes"] / (tmp_path / name / PACKED).stat().st_size
        assert rep["ideal_compression"] == rep["fp32_bytes"] / rep["ideal_bytes"] > rep["compression"]
