"""Post-training quantization: round every weight group to the nearest level, no training."""

from asr_lm_quant.quant.methods import Method


def quantize(ctx):
    from asr_lm_quant.quant.ptq import quantize_model
    return quantize_model(ctx.model, ctx.uniform_plan()), {}


METHOD = Method(name="ptq", help="round to the nearest level, no training (uniform --bits)", cost=0.05,
                handler=quantize, texts=())
