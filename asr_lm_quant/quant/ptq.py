"""Post-training quantization: put every weight group of a model on its table (scales fitted per plan)."""

from __future__ import annotations

import torch
import torch.nn as nn

from asr_lm_quant.quant.plan import QuantPlan, group_views
from asr_lm_quant.quant.quantizers import FLOAT_BITS, project


@torch.no_grad()
def quantize_model(model: nn.Module, plan: QuantPlan, refit: bool = True) -> QuantPlan:
    """Replace each group's weights by ``Q_b(W)`` in place; returns a copy of ``plan`` holding the scales.

    ``refit=False`` keeps the plan's scales and only rounds (the plan must carry scales then)."""
    plan.validate(model)
    out = plan.without_scales()
    for name, p in group_views(model, plan.groups).items():
        g = plan.groups[name]
        if g.bits == FLOAT_BITS:
            continue
        if refit or g.scales is None:
            q, scale = project(p, g.bits, g.per_row)
        else:
            from asr_lm_quant.quant.quantizers import dequantize, quantize_codes
            scale = plan.scale_tensor(name)
            q = dequantize(quantize_codes(p, g.bits, scale, g.per_row), scale, g.per_row)
        p.copy_(q.to(p.dtype))
        out.set_scale(name, scale)
    return out


def ptq(model: nn.Module, plan: QuantPlan) -> QuantPlan:
    """Post-training quantization (no training): the baseline of every results table."""
    return quantize_model(model, plan)
