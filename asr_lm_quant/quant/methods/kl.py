"""Mixed precision from measured KL divergences: each group quantized alone at each candidate precision, the
divergence of the model's next-word distributions from full precision on held-out text."""

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.methods import Flag, Method


def measure(ctx, names, record):
    from asr_lm_quant.quant.kl import kl_sensitivities, take_batches
    cfg = ctx.cfg
    valid = ctx.batches(cfg.valid_text, min(cfg.tokens_per_batch, cfg.kl_tokens), True)
    held = take_batches((b for _, b in valid.iterate(0)), cfg.kl_tokens)
    kl = kl_sensitivities(ctx.model, held, cfg.candidates, names, cfg.per_row)
    # the objective of the allocation: sum over groups of KL_g(b_g), as measured
    omega = kl["kl"]
    record["kl"] = {**kl, "kl": {n: {str(b): v for b, v in o.items()} for n, o in omega.items()}}
    return None, omega


def check(cfg):
    if cfg.kl_tokens < 1:
        raise InputError(None, f"kl_tokens must be at least 1, not {cfg.kl_tokens}", key="kl_tokens")


def handler(ctx):
    from asr_lm_quant.quant.mixed import run_mixed
    return run_mixed(ctx, measure)


METHOD = Method(
    name="kl", help="measured KL divergences choose the bits per group (mixed, --budget-*)", cost=1.6,
    handler=handler, mixed=True, texts=("train_text", "valid_text"), check=check, config={"kl_tokens": 8192},
    flags=(Flag("--kl-tokens", "kl_tokens",
                "held-out tokens the KL sensitivities average over (batches of --tokens-per-batch)", int),))
