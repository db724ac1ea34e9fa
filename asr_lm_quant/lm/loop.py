"""The one training loop, of LM training and of quantization fine-tuning, and LM training on top of it.

:func:`fit` runs optimizer steps: a :class:`StepSpec` says what one step is (its loss, learning rates per
parameter group, clipping, a hook after the update), the caller's ``on_step`` does the bookkeeping (logs,
validation, when to checkpoint, when to stop) and ``save`` writes a checkpoint (``lm.checkpoint``).
SIGINT/SIGTERM finish the step in progress, checkpoint and raise :class:`TrainingInterrupted`. Under
``torchrun`` the loss comes from a DistributedDataParallel module, which all-reduces the gradients.
:func:`train_loop` is LM training (``asr-lm-quant train``); ``quant.train`` drives the same loop.

Determinism: the batch order depends only on (seed, epoch) and LM training re-seeds the dropout RNG from
(seed, step, rank) before every step, so a run resumed from a checkpoint takes exactly the steps an
uninterrupted run takes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from asr_lm_quant.atomic import atomic_path
from asr_lm_quant.lm.checkpoint import save_checkpoint
from asr_lm_quant.lm.data import PAD_TARGET, Batch, BatchPlan
from asr_lm_quant.lm.files import state_for_saving
from asr_lm_quant.lm.optim import lr_at
from asr_lm_quant.lm.options import TrainOptions
from asr_lm_quant.progress import bar as progress_bar

log = logging.getLogger(__name__)

BEST_WEIGHTS = "best.safetensors"


def new_progress() -> dict:
    return {"step": 0, "epoch": 0, "batch": 0, "tokens": 0, "best_valid_ppl": None, "best_step": None,
            "bad_evals": 0, "lr_scale": 1.0, "done": False, "stop_reason": None, "valid": []}


def autocast(device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def lm_loss(model, batch: Batch, device="cpu", bf16: bool = False) -> tuple[torch.Tensor, int]:
    """Summed cross entropy (nats) over the batch's real target tokens, and their number."""
    inputs = batch.inputs.to(device, non_blocking=True)
    targets = batch.targets.to(device, non_blocking=True)
    with autocast(device, bf16):
        loss = model(inputs, targets=targets)  # fused with the output layer: no [tokens, vocab] logits
    return loss, batch.tokens


def lm_loss_with_log_z(model, batch: Batch, device="cpu", bf16: bool = False):
    """:func:`lm_loss` and, per real target token, the log normaliser ``log Z = logsumexp(logits)`` (the
    cross entropy is ``log Z - logit[target]``, so one log-sum-exp serves both)."""
    inputs = batch.inputs.to(device, non_blocking=True)
    targets = batch.targets.to(device, non_blocking=True)
    with autocast(device, bf16):
        logits = model(inputs)
    real = targets != PAD_TARGET
    logits = logits.float()[real]
    log_z = torch.logsumexp(logits, dim=-1)
    target_logit = logits.gather(-1, targets[real].unsqueeze(-1)).squeeze(-1)
    return (log_z - target_logit).sum(), log_z, batch.tokens


def self_norm_penalty(log_z: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * sum((log Z)^2)`` over the tokens: divided by the tokens like the cross entropy, the mean that
    self-normalised training adds to the loss (it pulls every log normaliser to 0)."""
    return alpha * log_z.square().sum()


@torch.no_grad()
def evaluate(model, plan: BatchPlan, device="cpu", *, bf16: bool = False, rank: int = 0,
             world_size: int = 1, log_z: bool = False) -> dict:
    """Perplexity over all of ``plan`` (end-of-sentence included); sums are all-reduced under DDP.
    ``log_z``: also the mean, mean absolute value and root mean square of the log normaliser (how far
    the model is from self-normalised: 0 for a model whose probabilities sum to 1 without normalising)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(5, dtype=torch.float64)
    for _, batch in plan.iterate(0, 0, rank, world_size):
        if log_z:
            loss, lz, n = lm_loss_with_log_z(model, batch, device, bf16)
            lz = lz.double()
            total += torch.tensor([loss.item(), n, lz.sum().item(), lz.abs().sum().item(),
                                   lz.square().sum().item()], dtype=torch.float64)
        else:
            loss, n = lm_loss(model, batch, device, bf16)
            total[:2] += torch.tensor([loss.item(), n], dtype=torch.float64)
    if world_size > 1:
        total = total.to(device)
        dist.all_reduce(total)
        total = total.cpu()
    model.train(was_training)
    loss, n, lz_sum, lz_abs, lz_sq = total.tolist()
    out = {"loss": loss / n, "ppl": math.exp(loss / n), "tokens": int(n)}
    if log_z:
        out.update(log_z_mean=lz_sum / n, log_z_mean_abs=lz_abs / n, log_z_rms=math.sqrt(lz_sq / n))
    return out


def step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 257 + rank) % (2 ** 63)


@dataclass
class StepSpec:
    """One optimizer step. ``loss(batch, step)`` returns ``(loss to minimise, LM loss for the log, tokens)``;
    ``lrs(step)`` the learning rate of each parameter group; ``seed(step)`` (optional) seeds the step's
    randomness; ``after_step(step)`` runs after the update (a projection, a dual update)."""
    optimizer: torch.optim.Optimizer
    loss: Callable
    lrs: Callable[[int], list]
    clip_params: list = field(default_factory=list)
    clip_norm: float = 0.0
    after_step: Callable | None = None
    seed: Callable | None = None


def take_step(spec: StepSpec, batch, step: int) -> dict:
    """Learning rates, loss, backward, clipping, update, hook: ``{"lr", "lm", "tokens", "grad_norm"}``."""
    if spec.seed is not None:
        spec.seed(step)
    lrs = spec.lrs(step)
    for g, lr in zip(spec.optimizer.param_groups, lrs):
        g["lr"] = lr
    loss, lm, tokens = spec.loss(batch, step)
    spec.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = None
    if spec.clip_norm > 0:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(spec.clip_params, spec.clip_norm))
    spec.optimizer.step()
    if spec.after_step is not None:
        spec.after_step(step)
    return {"lr": lrs[0], "lm": lm, "tokens": tokens, "grad_norm": grad_norm}


def fit(spec: StepSpec, batches, first_step: int, on_step, *, save=None, interrupted=None, bar=None,
        world_size: int = 1, device="cpu") -> int:
    """Train on ``batches`` from step ``first_step`` until they end or ``on_step`` says stop; returns the
    number of the next step.

    ``on_step(step, batch, out)`` (``out``: :func:`take_step`'s) returns ``(checkpoint now, stop)``;
    ``save(steps_done)`` writes a checkpoint; ``interrupted(steps_done, signal_name)`` returns the message
    of the :class:`TrainingInterrupted` raised after a signal (and the checkpoint it left)."""
    stop = StopSignal()
    step = first_step
    try:
        for batch in batches:
            out = take_step(spec, batch, step)
            step += 1
            if bar is not None:
                bar.update(1)
            save_now, finish = on_step(step - 1, batch, out)
            got_signal = stop.received(world_size, device)
            if save is not None and (save_now or got_signal):
                save(step)
            if got_signal:
                why = interrupted(step, stop.name) if interrupted is not None else ""
                raise TrainingInterrupted(why or f"stopped by {stop.name} after step {step}")
            if finish:
                break
    finally:
        stop.restore()
    return step


def train_loop(model, optimizer, plan: BatchPlan, opts: TrainOptions, *, valid: BatchPlan | None = None,
               out_dir=None, progress: dict | None = None, device="cpu", rank: int = 0, world_size: int = 1,
               ddp_model=None, max_steps_this_run: int = 0) -> dict:
    """LM training until ``opts.max_epochs``/``opts.max_steps``, early stopping, or ``max_steps_this_run``.

    ``model`` is the bare TransformerLM, ``ddp_model`` its DistributedDataParallel wrapper (if any).
    ``out_dir`` receives ``checkpoints/``, ``checkpoints/best.safetensors`` and ``log/train.jsonl``
    (rank 0 only). Returns the progress dict (``done`` is False when stopped by ``max_steps_this_run``).
    """
    run = _LMRun(model, optimizer, plan, opts, valid, out_dir, progress, device, rank, world_size,
                 max_steps_this_run)
    net = ddp_model if ddp_model is not None else model
    spec = StepSpec(optimizer, lambda batch, step: run.loss(net, batch), run.lr, list(model.parameters()),
                    opts.clip_norm, seed=lambda step: torch.manual_seed(step_seed(opts.seed, step, rank)))
    model.train()
    try:
        fit(spec, run.batches(), run.p["step"], run.on_step, bar=run.pbar, world_size=world_size, device=device,
            save=run.save if run.ckpt_root is not None else None, interrupted=run.interrupted)
    finally:
        run.close()
    return run.p


class _LMRun:
    """The bookkeeping of LM training around :func:`fit`: epochs, the log, validation, early stopping,
    checkpoints."""

    def __init__(self, model, optimizer, plan, opts, valid, out_dir, progress, device, rank, world_size,
                 max_steps_this_run):
        self.model, self.optimizer, self.plan, self.opts, self.valid = model, optimizer, plan, opts, valid
        self.device, self.rank, self.world_size = device, rank, world_size
        self.max_steps_this_run, self.run_steps = max_steps_this_run, 0
        self.p = p = progress if progress is not None else new_progress()
        self.total_steps = opts.max_steps or sum(plan.num_batches(e) for e in range(opts.max_epochs))
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.ckpt_root = self.out_dir / "checkpoints" if self.out_dir is not None else None
        self.logf = None
        if self.out_dir is not None and rank == 0:
            (self.out_dir / "log").mkdir(parents=True, exist_ok=True)
            self.logf = open(self.out_dir / "log" / "train.jsonl", "a", encoding="utf-8")
            _log(self.logf, {"event": "start", "step": p["step"], "epoch": p["epoch"], "world_size": world_size,
                             "steps_per_epoch": len(plan), "total_steps": self.total_steps})
        self.pbar = progress_bar(total=self.total_steps, initial=p["step"], enabled=rank == 0, unit="step",
                         mininterval=2.0, dynamic_ncols=True, desc="train")
        self._new_window()
        self.k, self.epoch_len = 0, 0

    def _new_window(self):
        self.win_loss, self.win_tok, self.win_tokens_global, self.win_log_z = 0.0, 0, 0, 0.0
        self.win_t0 = time.perf_counter()

    def lr(self, step):
        return [lr_at(step, self.total_steps, self.opts, self.p["lr_scale"])] * len(self.optimizer.param_groups)

    def loss(self, net, batch):
        scale = self.world_size / batch.global_tokens
        if self.opts.self_norm_alpha > 0:
            # self-normalisation: alpha * mean over real tokens of (log Z)^2 joins the cross entropy
            loss_sum, log_z, n = lm_loss_with_log_z(net, batch, self.device, self.opts.bf16)
            self.win_log_z += float(log_z.detach().abs().sum())
            return (loss_sum + self_norm_penalty(log_z, self.opts.self_norm_alpha)) * scale, loss_sum, n
        loss_sum, n = lm_loss(net, batch, self.device, self.opts.bf16)
        return loss_sum * scale, loss_sum, n

    def batches(self):
        """This rank's batches from where the progress stands, epoch after epoch."""
        p, opts = self.p, self.opts
        while not p["done"]:
            if p["epoch"] >= opts.max_epochs:
                _finish(p, "max_epochs")
                return
            self.epoch_len = self.plan.num_batches(p["epoch"])
            if p["batch"] >= self.epoch_len:  # nothing left of this epoch
                p["epoch"], p["batch"] = p["epoch"] + 1, 0
                continue
            epoch = p["epoch"]
            for self.k, batch in self.plan.iterate(epoch, p["batch"], self.rank, self.world_size):
                yield batch
                if p["done"] or p["epoch"] != epoch:
                    break

    def on_step(self, step, batch, out):
        p, opts = self.p, self.opts
        p["step"], p["batch"] = step + 1, self.k + 1
        p["tokens"] += batch.global_tokens
        self.run_steps += 1
        self.win_loss += out["lm"].item()
        self.win_tok += out["tokens"]
        self.win_tokens_global += batch.global_tokens
        end_of_epoch = self.k + 1 == self.epoch_len
        if p["step"] % opts.log_every == 0 or end_of_epoch:
            self._log_window(out)
        if end_of_epoch:
            p["epoch"], p["batch"] = p["epoch"] + 1, 0
        evaluated = self.valid is not None and (end_of_epoch or (opts.eval_every
                                                                 and p["step"] % opts.eval_every == 0))
        if evaluated:
            _validate(self.model, self.valid, opts, p, self.out_dir, self.device, self.rank, self.world_size,
                      self.logf, self.pbar)
        if opts.max_steps and p["step"] >= opts.max_steps:
            _finish(p, "max_steps")
        if end_of_epoch and p["epoch"] >= opts.max_epochs:
            _finish(p, "max_epochs")
        stop_run = bool(self.max_steps_this_run and self.run_steps >= self.max_steps_this_run and not p["done"])
        save_now = evaluated or p["done"] or stop_run or p["step"] % opts.checkpoint_every == 0
        return save_now, p["done"] or stop_run

    def _log_window(self, out):
        p, dt = self.p, time.perf_counter() - self.win_t0
        rec = {"event": "train", "step": p["step"], "epoch": p["epoch"], "lr": out["lr"],
               "loss": self.win_loss / max(1, self.win_tok), "grad_norm": out["grad_norm"],
               "tokens_per_s": self.win_tokens_global / dt if dt > 0 else None}
        if self.opts.self_norm_alpha > 0:
            rec["log_z_mean_abs"] = self.win_log_z / max(1, self.win_tok)
        self.pbar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s'] or 0:.0f}",
                              lr=f"{out['lr']:.2e}")
        _log(self.logf, rec)
        self._new_window()

    def save(self, steps_done):
        if self.rank == 0:
            save_checkpoint(self.ckpt_root, steps_done, self.p, model=self.model, optimizer=self.optimizer,
                            keep=self.opts.keep_checkpoints)
        if self.world_size > 1:
            dist.barrier()

    def interrupted(self, steps_done, signal_name):
        _log(self.logf, {"event": "interrupted", "step": steps_done, "signal": signal_name})
        where = f"; checkpoint at step {steps_done} in {self.ckpt_root}, the same command resumes" \
            if self.ckpt_root is not None else ""
        return f"stopped by {signal_name} after step {steps_done}{where}"

    def close(self):
        self.pbar.close()
        if self.logf is not None:
            p = self.p
            _log(self.logf, {"event": "stop", "step": p["step"], "done": p["done"], "reason": p["stop_reason"]})
            self.logf.close()


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after finishing a step and writing a checkpoint."""


class StopSignal:
    """SIGINT or SIGTERM during training: finish the current step, checkpoint, then stop. A second signal
    stops at once (the handlers are back to their defaults after the first)."""

    def __init__(self):
        self.name = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.name = signal.Signals(signum).name
        self.restore()

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    def received(self, world_size: int, device="cpu") -> bool:
        """Whether any process got a signal (all processes agree, so they stop at the same step)."""
        got = self.name is not None
        if world_size > 1:
            t = torch.tensor([int(got)], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            if t.item() and not got:
                self.name = "a signal to another process"
            got = bool(t.item())
        return got


def _finish(p, reason):
    if not p["done"]:
        p["done"] = True
        p["stop_reason"] = reason


def _validate(model, valid, opts, p, out_dir, device, rank, world_size, logf, pbar):
    r = evaluate(model, valid, device, bf16=opts.bf16, rank=rank, world_size=world_size,
                 log_z=opts.self_norm_alpha > 0)
    best = p["best_valid_ppl"]
    improved = best is None or r["ppl"] < best * (1 - opts.min_improvement)
    if improved:
        p["best_valid_ppl"], p["best_step"], p["bad_evals"] = r["ppl"], p["step"], 0
        if out_dir is not None and rank == 0:
            with atomic_path(out_dir / "checkpoints" / BEST_WEIGHTS) as tmp:
                save_file(state_for_saving(model), str(tmp), metadata={"step": str(p["step"])})
    else:
        p["bad_evals"] += 1
        if opts.schedule == "plateau":
            p["lr_scale"] *= opts.plateau_factor
            if opts.lr * p["lr_scale"] < opts.min_lr:
                _finish(p, "min_lr")
        if opts.patience and p["bad_evals"] >= opts.patience:
            _finish(p, "early_stopping")
    rec = {"event": "valid", "step": p["step"], "epoch": p["epoch"], "ppl": r["ppl"], "loss": r["loss"],
           "tokens": r["tokens"], "best_ppl": p["best_valid_ppl"], "improved": improved,
           **{k: v for k, v in r.items() if k.startswith("log_z")}}
    p["valid"].append({k: rec[k] for k in ("step", "epoch", "ppl")})
    _log(logf, rec)
    if rank == 0:
        pbar.write(f"step {p['step']} epoch {p['epoch']}: valid ppl {r['ppl']:.2f} (best {p['best_valid_ppl']:.2f})")


def _log(f, rec):
    if f is not None:
        f.write(json.dumps({"time": round(time.time(), 3), **rec}) + "\n")
        f.flush()
