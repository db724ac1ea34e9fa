"""Mixed-precision architecture search (methods.md): per-group logits over candidate precisions.

Group l's effective weight is ``sum_b softmax(a_l)_b * Q_b(W_l)`` (straight-through gradients through each
``Q_b``; optionally Gumbel-softmax samples instead of the softmax). The loss adds
``gamma * E[size] / budget`` to the LM cross entropy, where ``E[size]`` is the model size expected under the
softmax. Weights and logits train jointly; then ``argmax_b a_l`` per group, repaired greedily if over budget
and (``fill_budget``, default on) raised greedily while under it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asr_lm_quant.lm.data import BatchPlan
from asr_lm_quant.quant.allocate import group_bits_cost
from asr_lm_quant.quant.plan import assemble, group_names, group_views
from asr_lm_quant.quant.options import FinetuneOptions, SearchOptions
from asr_lm_quant.quant.quantizers import fake_quant
from asr_lm_quant.quant.parallel import LOCAL, Runtime
from asr_lm_quant.quant.resume import PhaseState
from asr_lm_quant.quant.train import objective, run_steps


def search_precisions(model, candidates, budget: float, train: BatchPlan, opts: FinetuneOptions,
                      sopts: SearchOptions, per_row: bool = False,
                      names: list[str] | None = None, teacher=None, rt: Runtime = LOCAL) -> tuple[dict[str, int], dict]:
    """Train the super-network; return ``(bits per group, record)``. ``budget`` is in bits (groups and
    scales, as :func:`allocate.budget_bits` gives). The model's latent weights are trained too.
    ``names``: the weight groups (``plan.group_names``; default every matrix whole). ``rt``: device, ranks and
    checkpoints (phase ``search``: the logits, scales and Gumbel generator are checkpointed)."""
    cands = sorted(int(b) for b in candidates)
    names = names or group_names(model)
    groups = group_views(model, names)
    rows = {n: p.shape[0] for n, p in groups.items()}
    costs = {n: torch.tensor([float(group_bits_cost(p.numel(), rows[n], b, per_row)) for b in cands],
                             device=rt.device)
             for n, p in groups.items()}
    logits = {n: torch.nn.Parameter(torch.zeros(len(cands), device=rt.device)) for n in groups}
    scales: dict = {}  # "<bits>:<group>" -> scale
    gen = torch.Generator().manual_seed(opts.seed)  # on the CPU: every rank and device draws the same noise
    state = {"trace": []}

    def probs(n):
        if sopts.gumbel:
            g = -torch.log(-torch.log(torch.rand(len(cands), generator=gen).clamp(1e-10, 1 - 1e-10)))
            return F.softmax((logits[n] + g.to(rt.device)) / sopts.tau, dim=0)
        return F.softmax(logits[n], dim=0)

    def loss_fn(b):
        weights, size = {}, 0.0
        for n, p in group_views(model, names).items():
            pr = probs(n)
            w = 0.0
            for i, bits in enumerate(cands):
                q, s = fake_quant(p, bits, per_row, init=scales.get(f"{bits}:{n}"))
                if s is not None:
                    scales[f"{bits}:{n}"] = s
                w = w + pr[i] * q
            weights[n] = w
            size = size + (pr * costs[n]).sum()
        loss, lm = objective(model, assemble(model, weights), b, opts, teacher)
        penalty = sopts.gamma * size / budget
        if rt.distributed:  # every rank adds the same penalty: its share is 1 / world_size
            penalty = penalty / rt.world_size
        return loss + penalty, lm

    def after_step(step):
        if (step + 1) % opts.log_every == 0:
            state["trace"].append({"step": step + 1,
                                   "probs": {n: F.softmax(a.detach(), 0).tolist() for n, a in logits.items()}})

    hist = run_steps(model, model.parameters(), train, opts, loss_fn, after_step, desc="search",
                     extra_params=list(logits.values()), extra_lr=sopts.arch_lr, rt=rt, phase="search",
                     state=PhaseState({"logits": logits, "scale": scales}, state, {"gumbel": gen}))
    final_logits = {n: a.detach().cpu() for n, a in logits.items()}
    chosen = {n: cands[int(torch.argmax(a))] for n, a in final_logits.items()}
    numel = {n: p.numel() for n, p in groups.items()}
    repaired = repair_budget(chosen, final_logits, cands, numel, rows, budget, per_row)
    if sopts.fill_budget:
        repaired = fill_budget(repaired, final_logits, cands, numel, rows, budget, per_row)
    record = {"candidates": cands, "argmax": chosen, "bits": repaired, "repaired": repaired != chosen,
              "logits": {n: a.tolist() for n, a in final_logits.items()}, "train": hist, "trace": state["trace"]}
    return repaired, record


def repair_budget(bits: dict[str, int], logits: dict[str, torch.Tensor], cands, numel, rows, budget: float,
                  per_row: bool = False) -> dict[str, int]:
    """Lower precisions greedily until the budget holds: each move takes the group and next-lower
    candidate that loses the least log-probability per bit saved."""
    bits = dict(bits)

    def size():
        return sum(group_bits_cost(numel[n], rows[n], b, per_row) for n, b in bits.items())

    while size() > budget:
        best = None
        for n, b in bits.items():
            lower = [c for c in cands if c < b]
            if not lower:
                continue
            nb = max(lower)
            lp = F.log_softmax(logits[n], 0)
            loss = float(lp[cands.index(b)] - lp[cands.index(nb)])
            saved = group_bits_cost(numel[n], rows[n], b, per_row) - group_bits_cost(numel[n], rows[n], nb, per_row)
            score = loss / saved
            if best is None or score < best[0]:
                best = (score, n, nb)
        if best is None:
            raise ValueError("budget cannot be met even at the lowest candidate precisions")
        bits[best[1]] = best[2]
    return bits


def fill_budget(bits: dict[str, int], logits: dict[str, torch.Tensor], cands, numel, rows, budget: float,
                per_row: bool = False) -> dict[str, int]:
    """Raise precisions greedily while the budget allows: the size penalty pushes every group down, so the
    argmax can end far below the budget. Each move takes the group and next-higher candidate that costs the
    least log-probability per bit spent (a gain counts as negative cost)."""
    bits = dict(bits)

    def cost(n, b):
        return group_bits_cost(numel[n], rows[n], b, per_row)

    total = sum(cost(n, b) for n, b in bits.items())
    while True:
        best = None
        for n, b in bits.items():
            higher = [c for c in cands if c > b]
            if not higher:
                continue
            nb = min(higher)
            extra = cost(n, nb) - cost(n, b)
            if total + extra > budget:
                continue
            lp = F.log_softmax(logits[n], 0)
            score = float(lp[cands.index(b)] - lp[cands.index(nb)]) / extra
            if best is None or score < best[0]:
                best = (score, n, nb, extra)
        if best is None:
            return bits
        bits[best[1]] = best[2]
        total += best[3]
