import json

import pytest
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.allocate import allocate_bits, budget_bits, group_bits_cost
from asr_lm_quant.quant.plan import QuantPlan, weight_groups
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.quant.quantizers import dequantize, fit_scale, kmax, quantize, quantize_codes


def tiny_model(layers=1, vocab=11):
    torch.manual_seed(0)
    return TransformerLM(LMConfig(vocab_size=vocab, d_model=8, n_layers=layers, n_heads=2, d_ff=12, dropout=0.0))


def test_tables_by_hand():
    w = torch.tensor([[0.9, -0.2, 0.05, -1.1]])
    # binary: alpha = mean |w| = 0.5625, codes sign with sign(0) = +1
    q = quantize(w, 1)
    assert q.scale.item() == pytest.approx(0.5625)
    assert q.codes.tolist() == [[1, -1, 1, -1]]
    # ternary table {-a, 0, a}: the optimum keeps the two large entries: a = (0.9 + 1.1) / 2 = 1.0
    q = quantize(w, 2)
    assert q.codes.tolist() == [[1, 0, 0, -1]]
    assert q.scale.item() == pytest.approx(1.0)
    assert q.weight().tolist() == [[1.0, 0.0, 0.0, -1.0]]
    assert [kmax(b) for b in (1, 2, 3, 4, 8)] == [1, 1, 3, 7, 127]
    # 3 bits: codes -3..3; weights on an exact grid are reproduced exactly
    g = torch.tensor([-0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75])
    q = quantize(g, 3)
    assert q.codes.tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert torch.allclose(q.weight(), g)


def _err(w, a, bits):
    c = quantize_codes(w, bits, torch.tensor([[a]]))
    return float(((w - a * c) ** 2).sum())


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_scale_is_least_squares_optimal(bits):
    torch.manual_seed(1)
    w = torch.randn(64, 32)
    a = fit_scale(w, bits).item()
    c = quantize_codes(w, bits, torch.tensor([[a]])).float()
    # closed form for its own codes
    assert a == pytest.approx(float((w * c).sum() / (c * c).sum()), rel=1e-5)
    # a fixed point of the alternation (codes are the rounding at alpha), and within 2% of the best
    # point of a dense scan of scales (the alternation finds a local optimum of a piecewise quadratic)
    e = _err(w, a, bits)
    for f in (0.9, 0.97, 1.03, 1.1):
        assert e <= _err(w, a * f, bits) * 1.005
    top = float(w.abs().max()) / kmax(bits)
    scan = min(_err(w, top * k / 400, bits) for k in range(1, 401))
    assert e <= scan * 1.02


def test_per_row_scales():
    w = torch.tensor([[1.0, -1.0, 1.0], [0.1, 0.1, -0.1]])
    q = quantize(w, 1, per_row=True)
    assert q.scale.reshape(-1).tolist() == pytest.approx([1.0, 0.1])
    assert torch.equal(q.weight(), torch.tensor([[1.0, -1.0, 1.0], [0.1, 0.1, -0.1]]) * 1.0)
    assert torch.equal(dequantize(q.codes, q.scale, True), q.weight())


def test_plan_groups_and_validation(tmp_path):
    m = tiny_model(layers=2)
    names = list(weight_groups(m))
    assert names[0] == "embed.weight" and "out.weight" not in names  # tied: one group
    assert len(names) == 1 + 2 * 4
    plan = QuantPlan.uniform(m, 4)
    plan.validate(m)
    bad = QuantPlan.uniform(tiny_model(layers=1), 4)
    with pytest.raises(InputError, match=r"missing from the plan: layers\.1\.attn\.in_proj\.weight"):
        bad.validate(m)
    bad.groups["layers.7.ff.fc1.weight"] = bad.groups["embed.weight"]
    with pytest.raises(InputError, match=r"not in the model: layers\.7\.ff\.fc1\.weight"):
        bad.validate(tiny_model(layers=1))
    # JSON round trip with scales
    fitted = quantize_model(m, plan)
    fitted.save(tmp_path / "plan.json")
    again = QuantPlan.load(tmp_path / "plan.json")
    assert again == fitted
    d = json.loads((tmp_path / "plan.json").read_text())
    d["groups"]["embed.weight"]["bits"] = 99
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(InputError, match="embed.weight"):
        QuantPlan.load(tmp_path / "bad.json")


def test_size_report_counts_float_params():
    m = tiny_model()
    rep = QuantPlan.uniform(m, 2).size_report(m)
    n_group = sum(p.numel() for p in weight_groups(m).values())
    n_all = sum(p.numel() for p in m.parameters())
    assert rep["group_params"] == n_group
    assert rep["float_params"] == n_all - n_group
    assert rep["ideal_bytes"] == n_group * 2 / 8 + 4 * (n_all - n_group)
    assert rep["fp32_bytes"] == 4 * n_all
    assert rep["avg_bits"] == 2


def test_milp_matches_brute_force():
    import itertools
    import random
    rng = random.Random(3)
    numel = {"a": 100, "b": 300, "c": 50, "d": 700}
    cands = [1, 2, 4, 8]
    omega = {n: {b: rng.random() * 10 / b ** rng.uniform(0.5, 2) for b in cands} for n in numel}
    rows = {n: 1 for n in numel}
    for avg in (1.3, 2.0, 3.1, 5.0):
        budget = budget_bits(numel, 0, avg_bits=avg)
        got = allocate_bits(omega, numel, budget, rows)
        best = None
        for combo in itertools.product(cands, repeat=len(numel)):
            bits = dict(zip(numel, combo))
            if sum(group_bits_cost(numel[n], 1, b, False) for n, b in bits.items()) <= budget:
                val = sum(omega[n][b] for n, b in bits.items())
                if best is None or val < best[0] - 1e-12:
                    best = (val, bits)
        assert sum(omega[n][b] for n, b in got.items()) == pytest.approx(best[0], rel=1e-9)
    with pytest.raises(InputError, match="below the smallest"):
        allocate_bits(omega, numel, budget_bits(numel, 0, avg_bits=0.9), rows)


def test_compression_budget():
    numel = {"a": 1000}
    b = budget_bits(numel, 100, compression=8)
    assert b == pytest.approx(32 * 1100 / 8 - 32 * 100)
    with pytest.raises(InputError):
        budget_bits(numel, 100, compression=0.5)
