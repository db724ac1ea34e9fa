"""ADMM quantization-aware fine-tuning: the weights are pulled towards their projection on the levels."""

from asr_lm_quant.quant.methods import Flag, Method
from asr_lm_quant.quant.options import AdmmOptions


def train_plan(ctx, plan):
    from asr_lm_quant.quant.train import admm_train
    return admm_train(ctx.model, plan, ctx.train, ctx.cfg.finetune, ctx.cfg.admm, ctx.teacher, ctx.rt)


METHOD = Method(
    name="admm", help="ADMM fine-tuning towards the quantized weights (uniform --bits)", cost=1.0,
    handler=lambda ctx: train_plan(ctx, ctx.uniform_plan()), train_plan=train_plan,
    config={"admm": AdmmOptions},
    flags=(Flag("--rho", "admm.rho", "ADMM penalty", float),
           Flag("--rho-growth", "admm.rho_growth", "ADMM rho factor per projection", float),
           Flag("--project-every", "admm.project_every", "ADMM steps between projections", int),
           Flag("--rho-max", "admm.rho_max", "ADMM rho ceiling", float),
           Flag("--admm-lr", "admm.lr", "learning rate of the ADMM W steps (default: --lr)", float),
           Flag("--final-steps", "admm.final_steps",
                "ADMM: the last of the --steps train the 32-bit parameters and scales, codes frozen", int),
           Flag("--final-lr", "admm.final_lr", "learning rate of those steps (default: --lr)", float)))
