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


def warmup_cosine(base: float, step: int, total_steps: int, warmup: int, min_ratio: float = 0.0,
                  decay_start: int | None = None) -> float:
    """The one warm-up + cosine schedule: ``base * warm * f`` for optimizer step ``step`` (0-based).

    ``warm`` rises linearly over the first ``warmup`` steps; ``f`` falls from 1 to ``min_ratio`` along a half
    cosine from step ``decay_start`` (default: the end of the warm-up) to ``total_steps``. LM training decays
    after the warm-up; quantization fine-tuning decays from step 0 to 0 (``decay_start=0``), so the weights
    settle on their quantized values as the rate vanishes."""
    warm = (step + 1) / warmup if warmup and step < warmup else 1.0
    start = warmup if decay_start is None else decay_start
    t = min(1.0, max(0.0, (step - start) / max(1, total_steps - start)))
    f = min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return base * warm * f


def lr_at(step: int, total_steps: int, opts: TrainOptions, plateau_scale: float = 1.0) -> float:
    """Learning rate of LM training for optimizer step ``step`` (0-based) of ``total_steps``."""
    w = opts.warmup_steps
    if opts.schedule == "cosine":
        return warmup_cosine(opts.lr, step, total_steps, w, opts.min_lr_ratio)
    warm = (step + 1) / w if w and step < w else 1.0
    if opts.schedule == "constant":
        f = 1.0
    elif opts.schedule == "plateau":
        f = plateau_scale
    elif opts.schedule == "inv_sqrt":
        f = math.sqrt(w / (step + 1)) if w and step >= w else 1.0
    else:  # linear
        t = min(1.0, max(0.0, (step - w) / max(1, total_steps - w)))
        f = opts.min_lr_ratio + (1 - opts.min_lr_ratio) * (1 - t)
    return opts.lr * warm * f
