"""Per-group Hessian traces by Hutchinson's estimator, and the sensitivity Omega_l(b).

``Tr(H_l) ~ mean_v v_l^T (H v)_l`` with Rademacher ``v``; ``H v`` comes from double back-propagation of the
mean token cross entropy (model in eval mode, so dropout does not make the loss random). Samples cycle over
held-out batches; sampling stops when every group's running mean moves by less than ``tol`` (relative) or
after ``max_samples``.
"""

from __future__ import annotations

import logging
import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.quant.parallel import LOCAL, Runtime
from asr_lm_quant.quant.plan import group_view, split_group, weight_groups
from asr_lm_quant.quant.quantizers import quant_error
from asr_lm_quant.quant.train import token_loss

log = logging.getLogger(__name__)


def rademacher(params: dict, generator: torch.Generator) -> list[torch.Tensor]:
    """One Rademacher vector per weight matrix, drawn on the CPU (the same numbers on every device)."""
    return [(torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1).to(p.device)
            for p in params.values()]


def hvp_sample(model, params: dict, inputs, targets, generator: torch.Generator,
               groups: list[str] | None = None, vectors: list[torch.Tensor] | None = None) -> dict[str, float]:
    """One Hutchinson sample per group: ``v_l . (H v)_l`` for one Rademacher vector ``v`` (``vectors``, or
    drawn from ``generator``). ``params``: the weight matrices; ``groups`` (default: those matrices whole) may
    split them into row bands."""
    names = list(params)
    ps = [params[n] for n in names]
    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU attention kernel has no double backward
        loss = token_loss(model(inputs), targets)
        grads = torch.autograd.grad(loss, ps, create_graph=True)
        vs = vectors if vectors is not None else rademacher(params, generator)
        hv = torch.autograd.grad(grads, ps, grad_outputs=vs)
    prods = {n: v * h for n, v, h in zip(names, vs, hv)}
    out = {}
    for g in groups or names:
        param, rows = split_group(g)
        out[g] = float((prods[param] if rows is None else prods[param][rows[0]:rows[1]]).sum())
    return out


def hutchinson_traces(model, batches: list, *, tol: float = 1e-2, max_samples: int = 100, min_samples: int = 4,
                      seed: int = 0, groups: list[str] | None = None, rt: Runtime = LOCAL) -> dict:
    """Estimate ``Tr(H_l)`` for every weight group (``groups``: names as in ``plan.group_names``; default
    every matrix whole). ``batches``: ``lm.data.Batch`` objects (held-out data).

    Under ``torchrun`` the ranks share the samples: each round of ``world_size`` samples, rank r computes
    sample r of the round (every rank draws all the round's vectors, so sample k uses the same vector and
    batch as in one process), and the round's values are summed over ranks. The estimate is then the
    one-process estimate, stopping at the same sample.

    Returns ``{"trace": {group: value}, "stderr": {group: value}, "samples": k, "converged": bool}``."""
    if not batches:
        raise ValueError("no batches for the Hessian estimate")
    weights = weight_groups(model)
    params = groups or list(weights)
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums = {n: 0.0 for n in params}
    sq = {n: 0.0 for n in params}
    prev, converged, k = None, False, 0
    bar = progress_bar(range(max_samples), desc="hutchinson", unit="sample", mininterval=5.0, dynamic_ncols=True,
                       enabled=rt.is_main)
    while k < max_samples and not converged:
        n_round = min(rt.world_size, max_samples - k)
        values = torch.zeros(n_round, len(params), dtype=torch.float64)
        for j in range(n_round):
            vs = rademacher(weights, gen)
            if j == rt.rank:
                b = rt.batch(batches[(k + j) % len(batches)])
                s = hvp_sample(model, weights, b.inputs, b.targets, gen, params, vectors=vs)
                values[j] = torch.tensor([s[n] for n in params], dtype=torch.float64)
        values = rt.all_sum(values)
        for row in values.tolist():
            k += 1
            for n, x in zip(params, row):
                sums[n] += x
                sq[n] += x * x
            mean = {n: sums[n] / k for n in params}
            bar.update(1)
            if prev is not None and k >= min_samples:
                change = max(abs(mean[n] - prev[n]) / max(abs(mean[n]), 1e-12) for n in params)
                bar.set_postfix(change=f"{change:.3g}")
                if change < tol:
                    converged = True
                    break
            prev = mean
    bar.close()
    model.train(was)
    stderr = {n: math.sqrt(max(sq[n] / k - (sums[n] / k) ** 2, 0.0) / max(k - 1, 1)) for n in params}
    return {"trace": {n: sums[n] / k for n in params}, "stderr": stderr, "samples": k, "converged": converged}


def sensitivities(model, traces: dict[str, float], candidates, per_row: bool = False) -> dict[str, dict[int, float]]:
    """``Omega_l(b) = Tr(H_l) / n_l * ||Q_b(W_l) - W_l||^2`` for every group and candidate precision.

    A negative trace estimate (non-convex point or noise) is floored at a tiny positive fraction of the
    largest trace, so the allocation still prefers the smaller quantization error there."""
    top = max((abs(t) for t in traces.values()), default=1.0) or 1.0
    out = {}
    for n in traces:
        p = group_view(model, n)
        tr = max(traces[n], 1e-6 * top)
        out[n] = {int(b): tr / p.numel() * quant_error(p, int(b), per_row) for b in candidates}
    return out
