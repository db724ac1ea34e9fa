"""Budget repair and fill after the precision search's argmax."""

import pytest
import torch

from asr_lm_quant.quant.allocate import group_bits_cost
from asr_lm_quant.quant.search import fill_budget, repair_budget

CANDS = [1, 2, 4, 8]
NUMEL = {"a": 1000, "b": 4000, "c": 500}
ROWS = {"a": 10, "b": 20, "c": 5}


def size(bits):
    return sum(group_bits_cost(NUMEL[n], ROWS[n], b, False) for n, b in bits.items())


def logits(prefs):
    return {n: torch.tensor(v, dtype=torch.float32) for n, v in prefs.items()}


def test_fill_uses_the_budget_and_never_exceeds_it():
    lg = logits({"a": [3.0, 2.0, 1.0, 0.0], "b": [3.0, 2.9, 0.0, 0.0], "c": [3.0, 0.0, 2.5, 0.0]})
    low = {"a": 1, "b": 1, "c": 1}
    budget = size({"a": 2, "b": 2, "c": 2})
    filled = fill_budget(low, lg, CANDS, NUMEL, ROWS, budget)
    assert size(filled) <= budget
    assert size(filled) > size(low)
    # no single further raise fits
    for n, b in filled.items():
        higher = [c for c in CANDS if c > b]
        if higher:
            assert size({**filled, n: min(higher)}) > budget
    # b is almost indifferent between 1 and 2 bits, so it is raised first
    assert filled["b"] >= 2


def test_repair_then_fill_stays_in_budget_and_fill_is_idempotent():
    lg = logits({"a": [0.0, 1.0, 2.0, 3.0], "b": [0.0, 1.0, 2.0, 3.0], "c": [0.0, 1.0, 2.0, 3.0]})
    top = {"a": 8, "b": 8, "c": 8}
    budget = size({"a": 4, "b": 2, "c": 4})
    repaired = repair_budget(top, lg, CANDS, NUMEL, ROWS, budget)
    assert size(repaired) <= budget
    assert size(fill_budget(repaired, lg, CANDS, NUMEL, ROWS, budget)) <= budget
    assert fill_budget(repaired, lg, CANDS, NUMEL, ROWS, budget) == fill_budget(
        fill_budget(repaired, lg, CANDS, NUMEL, ROWS, budget), lg, CANDS, NUMEL, ROWS, budget)
    with pytest.raises(ValueError, match="budget cannot be met"):
        repair_budget(top, lg, CANDS, NUMEL, ROWS, size({"a": 1, "b": 1, "c": 1}) - 1)
