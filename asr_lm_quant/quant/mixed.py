"""What the mixed-precision methods share: choose the bits of every group under the size budget (by a
method's own measure), record the choice for a resumed run, then train the chosen plan with the
``--plan-trainer`` method."""

from __future__ import annotations

import time

from asr_lm_quant.quant.allocate import allocate_bits
from asr_lm_quant.quant.methods import RunContext, get_method
from asr_lm_quant.quant.plan import QuantPlan, group_names, group_views


def run_mixed(ctx: RunContext, choose) -> tuple[QuantPlan, dict]:
    """``choose(ctx, names, record) -> (bits, omega)``: either the bits of every group (``{group: bits}``)
    or, for the allocation to pick them, the cost ``omega[group][bits]`` of every candidate precision; it
    records what it measured in ``record``."""
    cfg, rt = ctx.cfg, ctx.rt
    record: dict = {"budget_bits": ctx.budget}
    names = group_names(ctx.model, cfg.bands)
    groups = group_views(ctx.model, names)
    numel, rows = {n: p.numel() for n, p in groups.items()}, {n: p.shape[0] for n, p in groups.items()}
    t_sens = time.perf_counter()
    done = rt.checkpoints.finished(cfg.method)  # a resumed run: the precisions were chosen before
    if done is not None:
        bits = done[0]["chosen_bits"]
        record.update({k: v for k, v in done[0].items() if k != "chosen_bits"})
    else:
        bits, omega = choose(ctx, names, record)
        # what the choice of precisions cost: sensitivities (Hessian traces, KL passes) or the search
        record["sensitivity_seconds"] = time.perf_counter() - t_sens
        if bits is None:
            bits = allocate_bits(omega, numel, ctx.budget, rows, cfg.per_row)
            record["objective"] = sum(omega[n][b] for n, b in bits.items())
        rt.checkpoints.finish(cfg.method, {"chosen_bits": bits, **{k: v for k, v in record.items()
                                                                   if k != "budget_bits"}})
    record["chosen_bits"] = bits
    chosen = QuantPlan.from_bits(bits, cfg.per_row)
    plan, train_record = get_method(cfg.plan_trainer).train_plan(ctx, chosen)
    record.update(train_record)
    record["plan_trainer"] = cfg.plan_trainer
    return plan, record
