"""Size budgets and the exact bit allocation: minimise ``sum_l cost_l(b_l)`` under a size budget.

The cost of giving group l precision b is the Hessian method's ``Omega_l(b) = Tr(H_l)/n_l ||Q_b(W_l) - W_l||^2``
or the KL method's ``KL_l(b)`` (``kl.py``: the mean next-word KL divergence, full precision to the model with
only group l at b bits), taken as it is; either way the damage of the groups is treated as additive.
One binary variable per (group, candidate), one choice per group, one size row; ``scipy.optimize.milp``
solves it exactly. Sizes are in bits: codes ``n_l * b`` plus a 32-bit scale per group (or per row), plus the
32-bit parameters, which are fixed. Among equally good allocations the one that uses more of the budget is
taken (:func:`raise_free`).
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
    """Exact minimum of ``sum_l omega[l][b_l]`` subject to ``sum_l size_l(b_l) <= budget`` (bits), then
    :func:`raise_free` on the solution.

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
    return raise_free({n: b for (n, b), xi in zip(var, x) if xi}, omega, numel, budget, rows, per_row)


def raise_free(bits: dict[str, int], omega: dict[str, dict[int, float]], numel: dict[str, int], budget: float,
               rows: dict[str, int] | None = None, per_row: bool = False) -> dict[str, int]:
    """Raise groups to higher candidates that fit the remaining budget and cost no more: the objective does
    not rise, and budget the solver left unused (costs tied at 0, e.g. a KL of 0 where a table reproduces the
    weights, or gaps under its tolerances) goes to precision. Each move takes the largest cost decrease, then
    the most bits spent; repeated until no move is left."""
    bits = dict(bits)
    rows = rows or {n: 1 for n in bits}

    def size(n, b):
        return group_bits_cost(numel[n], rows[n], b, per_row)

    spare = budget - sum(size(n, b) for n, b in bits.items())
    while True:
        moves = [(omega[n][b] - omega[n][nb], size(n, nb) - size(n, b), n, nb)
                 for n, b in bits.items() for nb in omega[n]
                 if nb > b and omega[n][nb] <= omega[n][b] and size(n, nb) - size(n, b) <= spare]
        if not moves:
            return bits
        _, extra, n, nb = max(moves)
        bits[n] = nb
        spare -= extra
