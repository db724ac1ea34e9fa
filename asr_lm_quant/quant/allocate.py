"""Size budgets and the exact bit allocation: minimise ``sum_l Omega_l(b_l)`` under a size budget.

One binary variable per (group, candidate), one choice per group, one size row; ``scipy.optimize.milp``
solves it exactly. Sizes are in bits: codes ``n_l * b`` plus a 32-bit scale per group (or per row), plus the
32-bit parameters, which are fixed.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.quantizers import FLOAT_BITS


def group_bits_cost(numel: int, rows: int, bits: int, per_row: bool) -> int:
    """Bits a group occupies at ``bits`` precision, scales included."""
    if bits == FLOAT_BITS:
        return 32 * numel
    return numel * bits + 32 * (rows if per_row else 1)


def budget_bits(sizes: dict[str, int], float_params: int, *, avg_bits: float | None = None,
                compression: float | None = None) -> float:
    """The size budget in bits for the quantized groups (scales included), from exactly one of:
    ``avg_bits`` (average code bits over the group weights; scales ride on top) or ``compression`` (the 32-bit
    model size over the whole quantized model size, 32-bit parameters included)."""
    if (avg_bits is None) == (compression is None):
        raise ValueError("give exactly one of avg_bits and compression")
    n = sum(sizes.values())
    if avg_bits is not None:
        if avg_bits <= 0:
            raise InputError(None, f"average bits must be positive, not {avg_bits}", key="budget_bits")
        return avg_bits * n + 32 * len(sizes)
    if compression <= 1:
        raise InputError(None, f"compression ratio must exceed 1, not {compression}", key="compression")
    total = 32 * (n + float_params) / compression
    return total - 32 * float_params


def allocate_bits(omega: dict[str, dict[int, float]], numel: dict[str, int], budget: float,
                  rows: dict[str, int] | None = None, per_row: bool = False) -> dict[str, int]:
    """Exact minimum of ``sum_l omega[l][b_l]`` subject to ``sum_l cost_l(b_l) <= budget`` (bits).

    A budget below what the smallest candidates reach is an InputError that says the minimum."""
    names = list(omega)
    rows = rows or {n: 1 for n in names}
    var, cost, obj = [], [], []
    for n in names:
        for b, om in sorted(omega[n].items()):
            var.append((n, b))
            cost.append(group_bits_cost(numel[n], rows[n], b, per_row))
            obj.append(om)
    cost = np.array(cost, dtype=float)
    minimum = sum(min(group_bits_cost(numel[n], rows[n], b, per_row) for b in omega[n]) for n in names)
    if budget < minimum:
        raise InputError(None, f"size budget {budget / 8e6:.4f} MB of weights is below the smallest the candidate "
                               f"precisions reach ({minimum / 8e6:.4f} MB)", key="budget")
    one = np.zeros((len(names), len(var)))
    for j, (n, _) in enumerate(var):
        one[names.index(n), j] = 1
    # scale the objective so tiny sensitivities do not fall under the solver's tolerances
    c = np.array(obj, dtype=float)
    c = c / (np.abs(c).max() or 1.0)
    res = milp(c, integrality=np.ones(len(var)), bounds=Bounds(0, 1),
               constraints=[LinearConstraint(one, 1, 1), LinearConstraint(cost[None, :] / budget, -np.inf, 1.0)],
               options={"mip_rel_gap": 0.0})
    if not res.success:
        raise InputError(None, f"bit allocation failed: {res.message}", key="budget")
    x = np.round(res.x).astype(int)
    return {n: b for (n, b), xi in zip(var, x) if xi}
