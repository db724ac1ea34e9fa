"""The reusable training loop: loss, validation, checkpoints, early stopping, logging, DDP.

:func:`train_loop` is what ``asr-lm-quant train`` runs and what quantization-aware training reuses:
``extra_loss(model, batch, step) -> tensor`` adds terms to the LM loss (e.g. an ADMM penalty),
``after_step(model, step)`` runs after each optimizer step (e.g. a projection), and ``extra_state``
(an object with ``state_dict()`` / ``load_state_dict()`` of tensors) is checkpointed with the model.

Determinism: the batch order depends only on (seed, epoch) and the dropout RNG is re-seeded from
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
from pathlib import Path

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


def train_loop(model, optimizer, plan: BatchPlan, opts: TrainOptions, *, valid: BatchPlan | None = None,
               out_dir=None, progress: dict | None = None, extra_loss=None, after_step=None,
               extra_state=None, device="cpu", rank: int = 0, world_size: int = 1, ddp_model=None,
               max_steps_this_run: int = 0) -> dict:
    """Train until ``opts.max_epochs``/``opts.max_steps``, early stopping, or ``max_steps_this_run``.

    ``model`` is the bare TransformerLM, ``ddp_model`` its DistributedDataParallel wrapper (if any).
    ``out_dir`` receives ``checkpoints/``, ``checkpoints/best.safetensors`` and ``log/train.jsonl``
    (rank 0 only). Returns the progress dict (``done`` is False when stopped by ``max_steps_this_run``).
    """
    net = ddp_model if ddp_model is not None else model
    p = progress if progress is not None else new_progress()
    steps_per_epoch = len(plan)
    total_steps = opts.max_steps or sum(plan.num_batches(e) for e in range(opts.max_epochs))
    out_dir = Path(out_dir) if out_dir is not None else None
    ckpt_root = out_dir / "checkpoints" if out_dir is not None else None
    is_main = rank == 0
    logf = None
    if out_dir is not None and is_main:
        (out_dir / "log").mkdir(parents=True, exist_ok=True)
        logf = open(out_dir / "log" / "train.jsonl", "a", encoding="utf-8")
        _log(logf, {"event": "start", "step": p["step"], "epoch": p["epoch"], "world_size": world_size,
                    "steps_per_epoch": steps_per_epoch, "total_steps": total_steps})
    pbar = progress_bar(total=total_steps, initial=p["step"], enabled=is_main, unit="step", mininterval=2.0,
                        dynamic_ncols=True, desc="train")
    win_loss, win_tok, win_t0, win_tokens_global = 0.0, 0, time.perf_counter(), 0
    win_log_z = 0.0
    run_steps = 0
    model.train()
    stop_signal = _StopSignal()
    try:
        while not p["done"]:
            if p["epoch"] >= opts.max_epochs:
                _finish(p, "max_epochs")
                break
            stop_run = False
            epoch_len = plan.num_batches(p["epoch"])
            if p["batch"] >= epoch_len:  # nothing left of this epoch
                p["epoch"] += 1
                p["batch"] = 0
                continue
            for k, batch in plan.iterate(p["epoch"], p["batch"], rank, world_size):
                step = p["step"]
                torch.manual_seed(step_seed(opts.seed, step, rank))
                lr = lr_at(step, total_steps, opts, p["lr_scale"])
                for g in optimizer.param_groups:
                    g["lr"] = lr
                if opts.self_norm_alpha > 0:
                    # self-normalisation: alpha * mean over real tokens of (log Z)^2 joins the cross entropy
                    loss_sum, log_z, n = lm_loss_with_log_z(net, batch, device, opts.bf16)
                    loss = (loss_sum + self_norm_penalty(log_z, opts.self_norm_alpha)) * (world_size /
                                                                                           batch.global_tokens)
                    win_log_z += float(log_z.detach().abs().sum())
                else:
                    loss_sum, n = lm_loss(net, batch, device, opts.bf16)
                    loss = loss_sum * (world_size / batch.global_tokens)
                if extra_loss is not None:
                    loss = loss + extra_loss(model, batch, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = None
                if opts.clip_norm > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_norm))
                optimizer.step()
                if after_step is not None:
                    after_step(model, step)
                p["step"] += 1
                p["batch"] = k + 1
                p["tokens"] += batch.global_tokens
                run_steps += 1
                win_loss += loss_sum.item()
                win_tok += n
                win_tokens_global += batch.global_tokens
                pbar.update(1)
                end_of_epoch = k + 1 == epoch_len
                if p["step"] % opts.log_every == 0 or end_of_epoch:
                    dt = time.perf_counter() - win_t0
                    rec = {"event": "train", "step": p["step"], "epoch": p["epoch"], "lr": lr,
                           "loss": win_loss / max(1, win_tok), "grad_norm": grad_norm,
                           "tokens_per_s": win_tokens_global / dt if dt > 0 else None}
                    if opts.self_norm_alpha > 0:
                        rec["log_z_mean_abs"] = win_log_z / max(1, win_tok)
                    pbar.set_postfix(loss=f"{rec['loss']:.3f}", tok_s=f"{rec['tokens_per_s'] or 0:.0f}",
                                     lr=f"{lr:.2e}")
                    _log(logf, rec)
                    win_loss, win_tok, win_t0, win_tokens_global = 0.0, 0, time.perf_counter(), 0
                    win_log_z = 0.0
                if end_of_epoch:
                    p["epoch"] += 1
                    p["batch"] = 0
                evaluated = False
                if valid is not None and (end_of_epoch or (opts.eval_every and p["step"] % opts.eval_every == 0)):
                    _validate(model, valid, opts, p, out_dir, device, rank, world_size, logf, pbar)
                    evaluated = True
                if opts.max_steps and p["step"] >= opts.max_steps:
                    _finish(p, "max_steps")
                if end_of_epoch and p["epoch"] >= opts.max_epochs:
                    _finish(p, "max_epochs")
                if max_steps_this_run and run_steps >= max_steps_this_run and not p["done"]:
                    stop_run = True
                interrupted = stop_signal.received(world_size, device)
                if ckpt_root is not None and (evaluated or p["done"] or stop_run or interrupted
                                              or p["step"] % opts.checkpoint_every == 0):
                    if is_main:
                        save_checkpoint(ckpt_root, p["step"], model, optimizer, p, extra_state,
                                        keep=opts.keep_checkpoints)
                    if world_size > 1:
                        dist.barrier()
                if interrupted:
                    where = f"; checkpoint at step {p['step']} in {ckpt_root}, the same command resumes" \
                        if ckpt_root is not None else ""
                    _log(logf, {"event": "interrupted", "step": p["step"], "signal": stop_signal.name})
                    raise TrainingInterrupted(f"stopped by {stop_signal.name} after step {p['step']}{where}")
                if p["done"] or stop_run or end_of_epoch:
                    break
            if stop_run:
                break
    finally:
        stop_signal.restore()
        pbar.close()
        if logf is not None:
            _log(logf, {"event": "stop", "step": p["step"], "done": p["done"], "reason": p["stop_reason"]})
            logf.close()
    return p


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT/SIGTERM after finishing a step and writing a checkpoint."""


class _StopSignal:
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
