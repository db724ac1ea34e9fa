"""Optimizers and learning-rate schedules. The rate is a pure function of the step (and, for the
plateau schedule, of a scale kept in the training progress), so a resumed run follows the same curve."""

from __future__ import annotations

import math

import torch

from asr_lm_quant.lm.options import TrainOptions


def build_optimizer(model: torch.nn.Module, opts: TrainOptions) -> torch.optim.Optimizer:
    """AdamW/Adam/SGD; weight decay applies to matrices only (not biases, LayerNorms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": opts.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if opts.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=opts.lr, momentum=opts.momentum)
    cls = torch.optim.AdamW if opts.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=opts.lr, betas=opts.betas)


def lr_at(step: int, total_steps: int, opts: TrainOptions, plateau_scale: float = 1.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    w = opts.warmup_steps
    if w and step < w:
        warm = (step + 1) / w
    else:
        warm = 1.0
    if opts.schedule == "constant":
        f = 1.0
    elif opts.schedule == "plateau":
        f = plateau_scale
    elif opts.schedule == "inv_sqrt":
        f = math.sqrt(w / (step + 1)) if w and step >= w else 1.0
    else:
        span = max(1, total_steps - w)
        t = min(1.0, max(0.0, (step - w) / span))
        lo = opts.min_lr_ratio
        if opts.schedule == "cosine":
            f = lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            f = lo + (1 - lo) * (1 - t)
    return opts.lr * warm * f
