"""Fine-tuning loops for quantization: straight-through QAT and ADMM (methods.md), on ``lm.data`` batches.

Both train the latent float weights of a ``TransformerLM``; the forward pass sees whatever weights a method
chooses (fake-quantized for STE, plain for ADMM) through ``torch.func.functional_call``, which also keeps the
tied embedding/output matrix tied. Each returns the plan with fitted scales, the model already hard-quantized
(its weights exactly ``alpha * codes``), and a history of the training.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace


import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan
from asr_lm_quant.quant.plan import QuantPlan, assemble, group_views, split_group
from asr_lm_quant.quant.options import AdmmOptions, FinetuneOptions  # noqa: F401 (re-exported)
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.quant.quantizers import FLOAT_BITS, dequantize, fake_quant, project, quantize_codes

log = logging.getLogger(__name__)


def batch_stream(plan: BatchPlan):
    """Endless stream of training batches, epoch after epoch (order fixed by the plan's seed)."""
    epoch = 0
    while True:
        for _, b in plan.iterate(epoch):
            yield b
        epoch += 1


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy (nats) over the real target tokens."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD_TARGET)


def objective(logits: torch.Tensor, b, opts: FinetuneOptions, teacher=None):
    """``(training loss, LM cross entropy)``: the cross entropy, or with a ``teacher`` (the full-precision
    model) and ``opts.distill = d``, ``(1 - d) CE + d KL(teacher || model)`` per real target token: the whole
    next-word distribution of the teacher is a richer signal per token than the one observed word.

    Both terms come from one log-softmax of the model against the mixed target ``(1 - d) onehot + d p_teacher``
    (less the teacher's entropy, a constant); padding rows get a zero target rather than being selected out,
    which would copy the [tokens, vocabulary] matrices."""
    if teacher is None or opts.distill <= 0:
        ce = token_loss(logits, b.targets)
        return ce, ce.detach()
    d = opts.distill
    y = b.targets.reshape(-1)
    real = y != PAD_TARGET
    n = int(real.sum())
    rows = torch.arange(len(y))
    ls = logits.reshape(len(y), -1).float().log_softmax(-1)
    with torch.no_grad():
        lt = forward_with(teacher, {}, b.inputs, opts.bf16).reshape(len(y), -1).float().log_softmax(-1)
        q = lt.exp().mul_(real.unsqueeze(1) * d)
        entropy = -(q * lt).sum() / n  # d times the teacher's mean entropy
        q[rows, y.clamp(min=0)] += (1 - d) * real
        ce = -(ls[rows, y.clamp(min=0)] * real).sum() / n
    return -(q * ls).sum() / n - entropy, ce


def forward_with(model, weights: dict, inputs, bf16: bool = False):
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with ctx:
        return functional_call(model, weights, (inputs,), tie_weights=True)


@torch.no_grad()
def evaluate_ppl(model, plan: BatchPlan, bf16: bool = False) -> dict:
    """Perplexity of ``model`` (eval mode) over every batch of ``plan``; end of sentence included."""
    was = model.training
    model.eval()
    total, n = 0.0, 0
    for _, b in plan.iterate(0):
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
        with ctx:
            logits = model(b.inputs)
        total += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b.targets.reshape(-1),
                                       ignore_index=PAD_TARGET, reduction="sum"))
        n += b.tokens
    model.train(was)
    return {"loss": total / n, "ppl": math.exp(total / n), "tokens": n}


def run_steps(model, params, train: BatchPlan, opts: FinetuneOptions, loss_fn, after_step=None,
              desc: str = "finetune", extra_params=None, extra_lr: float | None = None,
              stream=None) -> list[dict]:
    """Adam on ``params`` (and ``extra_params`` at ``extra_lr``) for ``opts.steps`` steps of ``loss_fn(batch)``.

    ``loss_fn`` returns ``(total loss, lm loss)``; ``after_step(step)`` runs after each update; ``stream``
    (default: a fresh :func:`batch_stream`) lets a second phase go on where the first one stopped."""
    groups = [{"params": list(params), "lr": opts.lr}]
    if extra_params:
        groups.append({"params": list(extra_params), "lr": extra_lr or opts.lr})
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.Adam(groups)
    torch.manual_seed(opts.seed)
    stream = stream if stream is not None else batch_stream(train)
    model.train()
    hist, win, win_tok, t0 = [], 0.0, 0, time.perf_counter()
    for step in tqdm(range(opts.steps), desc=desc, unit="step", mininterval=5.0, dynamic_ncols=True):
        b = next(stream)
        warm = min(1.0, (step + 1) / max(1, opts.warmup))
        decay = 0.5 * (1 + math.cos(math.pi * step / max(1, opts.steps)))  # cosine to 0: W settles on Q
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * warm * decay
        loss, lm = loss_fn(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if opts.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(groups[0]["params"], opts.clip_norm)
        opt.step()
        if after_step is not None:
            after_step(step)
        win += float(lm) * b.tokens
        win_tok += b.tokens
        if (step + 1) % opts.log_every == 0 or step + 1 == opts.steps:
            dt = time.perf_counter() - t0
            hist.append({"step": step + 1, "loss": win / win_tok, "tokens_per_s": win_tok / dt})
            log.debug("%s step %d loss %.4f", desc, step + 1, win / win_tok)
            win, win_tok, t0 = 0.0, 0, time.perf_counter()
    model.eval()
    return hist


def _latent(model):
    return {n: p for n, p in model.named_parameters()}


def ste_train(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
              teacher=None) -> tuple[QuantPlan, dict]:
    """Quantization-aware training with straight-through gradients; ends hard-quantized. ``teacher``: the
    full-precision model, for ``opts.distill``."""
    plan.validate(model)
    scales = {}

    def loss_fn(b):
        weights = {}
        for n, p in group_views(model, plan.groups).items():
            g = plan.groups[n]
            weights[n], s = fake_quant(p, g.bits, g.per_row, init=scales.get(n))
            if s is not None:
                scales[n] = s
        return objective(forward_with(model, assemble(model, weights), b.inputs, opts.bf16), b, opts, teacher)

    hist = run_steps(model, model.parameters(), train, opts, loss_fn, desc="ste")
    return quantize_model(model, plan), {"train": hist}


def admm_train(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
               admm: AdmmOptions, teacher=None) -> tuple[QuantPlan, dict]:
    """ADMM: LM loss + scaled augmented Lagrangian; Q by projection (scale re-fitted), U dual updates.
    At the end W = Q(W) (the final weights projected): the returned model is exactly the quantized model whose
    perplexity is reported. Of ``opts.steps``, the last ``admm.final_steps`` train the 32-bit parameters and
    the scales with the codes frozen (:func:`train_frozen_codes`)."""
    plan.validate(model)
    names = [n for n, g in plan.groups.items() if g.bits != FLOAT_BITS]

    def views():  # fresh views each time: a view made once would hold a stale autograd edge
        return group_views(model, names)
    groups = views()
    scales, Q, U = {}, {}, {}
    for n, p in groups.items():
        g = plan.groups[n]
        Q[n], scales[n] = project(p, g.bits, g.per_row)
        U[n] = torch.zeros_like(p, dtype=torch.float32)
    state = {"rho": admm.rho}
    distances = [{"step": 0, "rel_dist": _rel_dist(groups, plan, scales)}]

    def loss_fn(b):
        loss, lm = objective(forward_with(model, {}, b.inputs, opts.bf16), b, opts, teacher)
        pen = sum(((p - Q[n] + U[n]) ** 2).sum() for n, p in views().items())
        return loss + 0.5 * state["rho"] * pen, lm

    def after_step(step):
        if (step + 1) % admm.project_every:
            return
        with torch.no_grad():
            for n, p in views().items():
                g = plan.groups[n]
                Q[n], scales[n] = project(p + U[n], g.bits, g.per_row, init=scales[n], max_iter=10)
                U[n] += p - Q[n]
        distances.append({"step": step + 1, "rel_dist": _rel_dist(views(), plan, scales), "rho": state["rho"]})
        state["rho"] = min(admm.rho_max, state["rho"] * admm.rho_growth)

    if not 0 <= admm.final_steps <= opts.steps:
        raise ValueError(f"ADMM final_steps ({admm.final_steps}) must lie within the {opts.steps} fine-tuning steps")
    stream = batch_stream(train)
    wopts = replace(opts, steps=opts.steps - admm.final_steps, lr=admm.lr or opts.lr)
    hist = run_steps(model, model.parameters(), train, wopts, loss_fn, after_step, desc="admm", stream=stream)
    with torch.no_grad():  # final hard quantization: W = Q(W), the nearest point of the set
        for n, p in views().items():
            g = plan.groups[n]
            Q[n], scales[n] = project(p, g.bits, g.per_row)
            p.copy_(Q[n])
    out = plan.without_scales()
    for n in groups:
        out.set_scale(n, scales[n])
    record = {"train": hist, "distance": distances}
    if admm.final_steps > 0:
        fopts = replace(opts, steps=admm.final_steps, lr=admm.final_lr or opts.lr)
        out, record["final"] = train_frozen_codes(model, out, train, fopts, stream=stream, teacher=teacher)
    return out, record


def train_frozen_codes(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
                       stream=None, teacher=None) -> tuple[QuantPlan, list[dict]]:
    """Adapt the 32-bit parameters (LayerNorms, biases) and the scales to a quantized model, codes fixed.

    ADMM trains the float parameters alongside the float weights ``W``; once ``W = Q`` they can follow the
    quantized weights. Each group's weights stay ``alpha * codes`` (scales kept positive as ``exp(log alpha)``),
    so the model remains exactly on its quantization tables and packs without loss."""
    plan.validate(model)
    quantized = [n for n, g in plan.groups.items() if g.bits != FLOAT_BITS]
    codes, log_alpha = {}, {}
    for n, p in group_views(model, quantized).items():
        g = plan.groups[n]
        scale = plan.scale_tensor(n)
        codes[n] = quantize_codes(p, g.bits, scale, g.per_row)
        log_alpha[n] = torch.nn.Parameter(scale.float().reshape(-1, 1).log())
    # a matrix is frozen unless one of its groups is float (that band then trains; the rest of the
    # matrix is rewritten from its codes at the end)
    float_params = {split_group(n)[0] for n, g in plan.groups.items() if g.bits == FLOAT_BITS}
    frozen = [model.get_parameter(p) for p in {split_group(n)[0] for n in quantized} - float_params]
    for p in frozen:
        p.requires_grad_(False)

    def loss_fn(b):
        weights = {n: dequantize(codes[n], log_alpha[n].exp(), plan.groups[n].per_row) for n in quantized}
        weights.update(group_views(model, [n for n in plan.groups if n not in codes]))
        return objective(forward_with(model, assemble(model, weights), b.inputs, opts.bf16), b, opts, teacher)

    floats = [p for p in model.parameters() if p.requires_grad]
    try:
        # the scales move in log space: a learning rate there is a relative step, whatever their magnitude
        hist = run_steps(model, floats, train, opts, loss_fn, desc="frozen codes",
                         extra_params=list(log_alpha.values()), extra_lr=opts.lr, stream=stream)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    out = plan.without_scales()
    with torch.no_grad():
        for n, p in group_views(model, quantized).items():
            alpha = log_alpha[n].detach().exp()
            p.copy_(dequantize(codes[n], alpha, plan.groups[n].per_row))
            out.set_scale(n, alpha)
    return out, hist


def _rel_dist(groups, plan, scales) -> float:
    """Distance of W to the quantization set, ||W - Q(W)||^2 / ||W||^2, over all quantized groups."""
    with torch.no_grad():
        num = den = 0.0
        for n, p in groups.items():
            g = plan.groups[n]
            q, _ = project(p, g.bits, g.per_row, init=scales.get(n), max_iter=10)
            num += float(((p - q) ** 2).sum())
            den += float((p ** 2).sum())
    return num / max(den, 1e-30)
