"""Quantization-aware fine-tuning with the straight-through estimator."""

from asr_lm_quant.quant.methods import Method


def train_plan(ctx, plan):
    from asr_lm_quant.quant.train import ste_train
    return ste_train(ctx.model, plan, ctx.train, ctx.cfg.finetune, ctx.teacher, ctx.rt)


METHOD = Method(name="ste", help="fine-tune through the rounding, straight-through estimator (uniform --bits)",
                cost=1.0, handler=lambda ctx: train_plan(ctx, ctx.uniform_plan()), train_plan=train_plan)
