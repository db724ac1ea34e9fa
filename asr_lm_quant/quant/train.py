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

from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan
from asr_lm_quant.lm.loop import StepSpec, autocast, fit, step_seed
from asr_lm_quant.lm.optim import warmup_cosine
from asr_lm_quant.lm.model import final_hidden
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.quant.parallel import LOCAL, Runtime
from asr_lm_quant.quant.resume import BatchStream, PhaseState
from asr_lm_quant.quant.plan import QuantPlan, assemble, group_views, split_group
from asr_lm_quant.quant.options import AdmmOptions, FinetuneOptions  # noqa: F401 (re-exported)
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.quant.quantizers import FLOAT_BITS, dequantize, fake_quant, project, quantize_codes

log = logging.getLogger(__name__)


def batch_stream(plan: BatchPlan, rt: Runtime = LOCAL) -> BatchStream:
    """Endless stream of training batches (this rank's rows), epoch after epoch (order fixed by the plan's
    seed)."""
    return BatchStream(plan, rt.rank, rt.world_size)


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy (nats) over the real target tokens."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD_TARGET)


def objective(model, weights: dict, b, opts: FinetuneOptions, teacher=None):
    """``(training loss, LM cross entropy)`` of ``model`` with ``weights`` in place of its own (see
    ``functional_call``) on batch ``b``: the cross entropy, or with a ``teacher`` (the full-precision model)
    and ``opts.distill = d``, ``(1 - d) CE + d KL(teacher || model)`` per real target token: the whole
    next-word distribution of the teacher is a richer signal per token than the one observed word.

    Both terms come from the model's output layer fused with its loss, a chunk of positions at a time
    (:mod:`asr_lm_quant.lm.output_loss`), against the mixed target ``(1 - d) onehot + d p_teacher``; the
    teacher's logits are made chunk by chunk beside them, so no ``[tokens, vocabulary]`` matrix is ever whole.
    Under data parallelism the training loss is this rank's share of the global batch's (``parallel``); the
    cross entropy stays this rank's mean."""
    soft = None
    if teacher is not None and opts.distill > 0:
        with torch.no_grad(), autocast(b.inputs.device, opts.bf16):
            soft = (final_hidden(teacher, b.inputs), teacher.out, opts.distill)
    with autocast(b.inputs.device, opts.bf16):
        out = functional_call(model, weights, (b.inputs,), {"targets": b.targets, "teacher": soft},
                              tie_weights=True)
    loss, ce = out if soft is not None else (out, out.detach())
    n = max(1, b.tokens)
    loss, ce = loss / n, ce / n
    if b.tokens != b.global_tokens:
        loss = loss * (b.tokens / b.global_tokens)
    return loss, ce


@torch.no_grad()
def evaluate_ppl(model, plan: BatchPlan, bf16: bool = False) -> dict:
    """Perplexity of ``model`` (eval mode, on its own device) over every batch of ``plan``; end of sentence
    included."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for _, b in plan.iterate(0):
        with autocast(device, bf16):  # the output layer fused with the loss: no [tokens, vocabulary] logits
            total += float(model(b.inputs.to(device), targets=b.targets.to(device)))
        n += b.tokens
    model.train(was)
    return {"loss": total / n, "ppl": math.exp(total / n), "tokens": n}


class _Objective(torch.nn.Module):
    """The trained parameters (the model's and a method's own, e.g. scales or architecture logits) and the
    method's loss, as one module: under ``torchrun`` DistributedDataParallel wraps it and all-reduces every
    gradient. DDP averages over ranks while each rank's loss is its share of the global batch's, so the loss
    is scaled by the number of ranks."""

    def __init__(self, model, extra_params, loss_fn, world_size: int):
        super().__init__()
        self.model, self.extra = model, torch.nn.ParameterList(extra_params or [])
        self.loss_fn, self.world_size = loss_fn, world_size

    def forward(self, b):
        loss, lm = self.loss_fn(b)
        return (loss * self.world_size if self.world_size > 1 else loss), lm


def run_steps(model, params, train: BatchPlan, opts: FinetuneOptions, loss_fn, after_step=None,
              desc: str = "finetune", extra_params=None, extra_lr: float | None = None,
              stream=None, rt: Runtime = LOCAL, phase: str | None = None,
              state: PhaseState | None = None) -> list[dict]:
    """Adam on ``params`` (and ``extra_params`` at ``extra_lr``) for ``opts.steps`` steps of ``loss_fn(batch)``,
    through the one training loop (``lm.loop.fit``) and its warm-up + cosine schedule (decaying to 0 from step 0).

    ``loss_fn`` returns ``(total loss, lm loss)``; ``after_step(step)`` runs after each update; ``stream``
    (default: a fresh :func:`batch_stream`) lets a second phase go on where the first one stopped.
    ``rt``: device and ranks (DistributedDataParallel under ``torchrun``). With ``rt.checkpoints`` and a
    ``phase`` name, the loop resumes that phase from a checkpoint, checkpoints every ``checkpoints.every``
    steps, and on SIGINT/SIGTERM checkpoints after the step in progress and raises ``TrainingInterrupted``;
    ``state`` holds the method's variables that go into the checkpoint."""
    groups = [{"params": list(params), "lr": opts.lr}]
    if extra_params:
        groups.append({"params": list(extra_params), "lr": extra_lr or opts.lr})
    base_lrs = [g["lr"] for g in groups]
    opt = torch.optim.Adam(groups)
    # dropout masks: rank 0 draws as a single process does, the other ranks streams of their own
    torch.manual_seed(opts.seed if rt.rank == 0 else step_seed(opts.seed, 0, rt.rank))
    stream = stream if stream is not None else batch_stream(train, rt)
    ckpts = rt.checkpoints if phase is not None else None
    run = _PhaseRun(opts, rt, desc)
    if ckpts is not None:
        cur = ckpts.restore(phase, model, opt, state, stream)
        if cur is not None:
            run.hist, run.start, (run.win, run.win_tok) = cur["hist"], cur["step"], cur["window"]
    objective_module = _Objective(model, extra_params, loss_fn, rt.world_size)
    net = objective_module
    if rt.distributed:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(objective_module, device_ids=[rt.device.index] if rt.device.type == "cuda"
                                      else None)

    def loss(b, step):
        total, lm = net(b)
        return total, lm, b.tokens

    spec = StepSpec(opt, loss, lambda step: [warmup_cosine(lr, step, opts.steps, opts.warmup, decay_start=0)
                                             for lr in base_lrs],
                    groups[0]["params"], opts.clip_norm, after_step)
    save = interrupted = None
    if ckpts is not None:
        def save(steps_done):
            ckpts.save(phase, steps_done, model, opt, state, stream, run.hist, [run.win, run.win_tok])

        def interrupted(steps_done, signal_name):
            return (f"stopped by {signal_name} after {desc} step {steps_done}; checkpoint in {ckpts.root}, "
                    "the same command resumes")
    model.train()
    bar = progress_bar(desc=desc, unit="step", mininterval=5.0, dynamic_ncols=True, initial=run.start,
                       total=opts.steps, enabled=rt.is_main)
    try:
        fit(spec, (rt.batch(next(stream)) for _ in range(run.start, opts.steps)), run.start,
            lambda step, b, out: run.on_step(step, out, ckpts), save=save, interrupted=interrupted, bar=bar,
            world_size=rt.world_size, device=rt.device)
    finally:
        bar.close()
    model.eval()
    return run.hist


class _PhaseRun:
    """The history of a fine-tuning phase: the LM loss per ``log_every`` steps (summed over ranks)."""

    def __init__(self, opts, rt, desc):
        self.opts, self.rt, self.desc = opts, rt, desc
        self.hist, self.start, self.win, self.win_tok = [], 0, 0.0, 0
        self.t0 = time.perf_counter()

    def on_step(self, step, out, ckpts):
        self.win += float(out["lm"]) * out["tokens"]
        self.win_tok += out["tokens"]
        steps = self.opts.steps
        if (step + 1) % self.opts.log_every == 0 or step + 1 == steps:
            dt = time.perf_counter() - self.t0
            win, win_tok = self.rt.all_sum(torch.tensor([self.win, self.win_tok], dtype=torch.float64)).tolist() \
                if self.rt.distributed else (self.win, self.win_tok)
            self.hist.append({"step": step + 1, "loss": win / win_tok, "tokens_per_s": win_tok / dt})
            log.debug("%s step %d loss %.4f", self.desc, step + 1, win / win_tok)
            self.win, self.win_tok, self.t0 = 0.0, 0, time.perf_counter()
        return ckpts is not None and ckpts.due(step + 1) and step + 1 < steps, False


def ste_train(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
              teacher=None, rt: Runtime = LOCAL) -> tuple[QuantPlan, dict]:
    """Quantization-aware training with straight-through gradients; ends hard-quantized. ``teacher``: the
    full-precision model, for ``opts.distill``; ``rt``: device, ranks and checkpoints (phase ``ste``)."""
    plan.validate(model)
    done = rt.checkpoints.finished("ste") if rt.checkpoints is not None else None
    if done is not None:
        rt.checkpoints.load_model_of("ste", model)
        return quantize_model(model, plan), {"train": done[0]["train"]}
    scales = {}

    def loss_fn(b):
        weights = {}
        for n, p in group_views(model, plan.groups).items():
            g = plan.groups[n]
            weights[n], s = fake_quant(p, g.bits, g.per_row, init=scales.get(n))
            if s is not None:
                scales[n] = s
        return objective(model, assemble(model, weights), b, opts, teacher)

    hist = run_steps(model, model.parameters(), train, opts, loss_fn, desc="ste", rt=rt, phase="ste",
                     state=PhaseState({"scale": scales}))
    if rt.checkpoints is not None:
        rt.checkpoints.finish("ste", {"train": hist}, model)
    return quantize_model(model, plan), {"train": hist}


def admm_train(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
               admm: AdmmOptions, teacher=None, rt: Runtime = LOCAL) -> tuple[QuantPlan, dict]:
    """ADMM: LM loss + scaled augmented Lagrangian; Q by projection (scale re-fitted), U dual updates.
    At the end W = Q(W) (the final weights projected): the returned model is exactly the quantized model whose
    perplexity is reported. Of ``opts.steps``, the last ``admm.final_steps`` train the 32-bit parameters and
    the scales with the codes frozen (:func:`train_frozen_codes`). Checkpoint phases: ``admm``, ``frozen``."""
    plan.validate(model)
    names = [n for n, g in plan.groups.items() if g.bits != FLOAT_BITS]
    if not 0 <= admm.final_steps <= opts.steps:
        raise ValueError(f"ADMM final_steps ({admm.final_steps}) must lie within the {opts.steps} fine-tuning steps")

    def views():  # fresh views each time: a view made once would hold a stale autograd edge
        return group_views(model, names)
    stream = batch_stream(train, rt)
    done = rt.checkpoints.finished("admm") if rt.checkpoints is not None else None
    if done is not None:  # the W steps are behind us: their weights W = Q, scales and records
        meta, tensors = done
        rt.checkpoints.load_model_of("admm", model)
        scales = {n: tensors[f"scale/{n}"].to(rt.device) for n in names}
        hist, distances = meta["train"], meta["distance"]
        stream.seek(meta["stream"])
    else:
        hist, distances, scales = _admm_steps(model, plan, names, views, train, opts, admm, teacher, rt, stream)
    out = plan.without_scales()
    for n in names:
        out.set_scale(n, scales[n])
    record = {"train": hist, "distance": distances}
    if admm.final_steps > 0:
        fopts = replace(opts, steps=admm.final_steps, lr=admm.final_lr or opts.lr)
        out, record["final"] = train_frozen_codes(model, out, train, fopts, stream=stream, teacher=teacher, rt=rt)
    return out, record


def _admm_steps(model, plan, names, views, train, opts, admm, teacher, rt, stream):
    """The W steps of ADMM, then W = Q(W): ``(history, distances, scales)``."""
    groups = views()
    scales, Q, U = {}, {}, {}
    for n, p in groups.items():
        g = plan.groups[n]
        Q[n], scales[n] = project(p, g.bits, g.per_row)
        U[n] = torch.zeros_like(p, dtype=torch.float32)
    # rho and the distances so far are checkpointed with Q, U and the scales
    state = {"rho": admm.rho, "distance": [{"step": 0, "rel_dist": _rel_dist(groups, plan, scales)}]}

    def loss_fn(b):
        loss, lm = objective(model, {}, b, opts, teacher)
        pen = sum(((p - Q[n] + U[n]) ** 2).sum() for n, p in views().items())
        if rt.distributed:  # every rank adds the same penalty: its share is 1 / world_size
            pen = pen / rt.world_size
        return loss + 0.5 * state["rho"] * pen, lm

    def after_step(step):
        if (step + 1) % admm.project_every:
            return
        with torch.no_grad():
            for n, p in views().items():
                g = plan.groups[n]
                Q[n], scales[n] = project(p + U[n], g.bits, g.per_row, init=scales[n], max_iter=10)
                U[n] += p - Q[n]
        state["distance"].append({"step": step + 1, "rel_dist": _rel_dist(views(), plan, scales),
                                  "rho": state["rho"]})
        state["rho"] = min(admm.rho_max, state["rho"] * admm.rho_growth)

    wopts = replace(opts, steps=opts.steps - admm.final_steps, lr=admm.lr or opts.lr)
    hist = run_steps(model, model.parameters(), train, wopts, loss_fn, after_step, desc="admm", stream=stream,
                     rt=rt, phase="admm", state=PhaseState({"Q": Q, "U": U, "scale": scales}, state))
    distances = state["distance"]
    with torch.no_grad():  # final hard quantization: W = Q(W), the nearest point of the set
        for n, p in views().items():
            g = plan.groups[n]
            Q[n], scales[n] = project(p, g.bits, g.per_row)
            p.copy_(Q[n])
    if rt.checkpoints is not None:
        rt.checkpoints.finish("admm", {"train": hist, "distance": distances, "stream": stream.position()}, model,
                              {f"scale/{n}": s for n, s in scales.items()})
    return hist, distances, scales


def train_frozen_codes(model, plan: QuantPlan, train: BatchPlan, opts: FinetuneOptions,
                       stream=None, teacher=None, rt: Runtime = LOCAL) -> tuple[QuantPlan, list[dict]]:
    """Adapt the 32-bit parameters (LayerNorms, biases) and the scales to a quantized model, codes fixed.

    ADMM trains the float parameters alongside the float weights ``W``; once ``W = Q`` they can follow the
    quantized weights. Each group's weights stay ``alpha * codes`` (scales kept positive as ``exp(log alpha)``),
    so the model remains exactly on its quantization tables and packs without loss. Checkpoint phase
    ``frozen``: its codes and scales are checkpointed with it."""
    plan.validate(model)
    quantized = [n for n, g in plan.groups.items() if g.bits != FLOAT_BITS]
    codes, log_alpha = {}, {}
    for n, p in group_views(model, quantized).items():
        g = plan.groups[n]
        scale = plan.scale_tensor(n).to(p.device)
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
        return objective(model, assemble(model, weights), b, opts, teacher)

    floats = [p for p in model.parameters() if p.requires_grad]
    try:
        # the scales move in log space: a learning rate there is a relative step, whatever their magnitude
        hist = run_steps(model, floats, train, opts, loss_fn, desc="frozen codes",
                         extra_params=list(log_alpha.values()), extra_lr=opts.lr, stream=stream, rt=rt,
                         phase="frozen", state=PhaseState({"codes": codes, "log_alpha": log_alpha}))
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
