"""Mixed precision from Hessian traces (Hutchinson's estimate on held-out text): the bits of every group that
minimise the summed sensitivities under the size budget."""

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.methods import Flag, Method


def measure(ctx, names, record):
    from asr_lm_quant.quant.hessian import hutchinson_traces, sensitivities
    cfg = ctx.cfg
    valid = ctx.batches(cfg.valid_text, cfg.tokens_per_batch, True)
    held = [b for _, (_, b) in zip(range(cfg.hessian_batches), valid.iterate(0))]
    tr = hutchinson_traces(ctx.model, held, tol=cfg.hessian_tol, max_samples=cfg.hessian_max_samples,
                           seed=cfg.seed, groups=names, rt=ctx.rt)
    omega = sensitivities(ctx.model, tr["trace"], cfg.candidates, cfg.per_row)
    record["hessian"] = tr
    record["omega"] = {n: {str(b): v for b, v in o.items()} for n, o in omega.items()}
    return None, omega


def check(cfg):
    for name in ("hessian_max_samples", "hessian_batches"):
        if getattr(cfg, name) < 1:
            raise InputError(None, f"{name} must be at least 1, not {getattr(cfg, name)}", key=name)


def handler(ctx):
    from asr_lm_quant.quant.mixed import run_mixed
    return run_mixed(ctx, measure)


METHOD = Method(
    name="hessian", help="Hessian-trace sensitivities choose the bits per group (mixed, --budget-*)", cost=1.25,
    handler=handler, mixed=True, texts=("train_text", "valid_text"), check=check,
    config={"hessian_tol": 1e-2, "hessian_max_samples": 50, "hessian_batches": 8},
    flags=(Flag("--hessian-tol", "hessian_tol", "Hutchinson stopping tolerance (relative)", float),
           Flag("--hessian-max-samples", "hessian_max_samples", "Hutchinson samples at most", int),
           Flag("--hessian-batches", "hessian_batches", "held-out batches the Hessian cycles over", int)))
