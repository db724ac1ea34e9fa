"""``asr-lm-quant train``: build the data, the model and the optimizer, resume if a checkpoint exists,
run :func:`~asr_lm_quant.lm.loop.train_loop`, and write the final model directory.

The same command works in one process and under ``torchrun`` (DistributedDataParallel: gloo on CPU,
nccl on GPU); the global batch is the same in both, each rank taking its share of every batch.
Output directory: ``config.json``, ``model.safetensors``, ``words.txt`` (the best model by validation
perplexity, loadable with :func:`~asr_lm_quant.lm.files.load_lm`), ``results.json``,
``train_config.json``, ``checkpoints/``, ``log/train.jsonl``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.checkpoint import latest_checkpoint, load_checkpoint
from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
from asr_lm_quant.lm.files import SELF_NORM_KEY, save_lm
from asr_lm_quant.lm.loop import BEST_WEIGHTS, evaluate, new_progress, train_loop
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.lm.optim import build_optimizer
from asr_lm_quant.lm.options import TrainOptions, load_train_config
from asr_lm_quant.text.vocab import Vocabulary

log = logging.getLogger(__name__)

RESULTS = "results.json"
RUN_CONFIG = "train_config.json"


def init_distributed() -> tuple[int, int, str]:
    """Join the torchrun process group if there is one; returns (rank, world_size, device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    return rank, world_size, device


def max_weight_difference_across_ranks(model, device) -> float:
    """Largest absolute difference between this rank's weights and rank 0's (all-reduced max)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()]).to(device)
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def train(config, train_text, valid_text, vocab_path, out_dir, *, seed: int | None = None,
          overrides: dict | None = None, max_steps_this_run: int = 0, init_model=None) -> dict:
    """Train (or resume training) an LM; returns the results dict written to ``results.json``.

    ``config``: a configuration file (``{"model": {...}, "train": {...}}``); ``overrides``: training
    options that replace the file's (e.g. ``{"max_epochs": 2}``); ``init_model``: a model directory whose
    weights start the training (fine-tuning). Re-running the same command resumes from the newest
    checkpoint; a different configuration for the same ``out_dir`` is an error.
    """
    out_dir = Path(out_dir)
    model_cfg, opts = _options(config, overrides, seed)
    vocab = Vocabulary.load(vocab_path)
    rank, world_size, device = init_distributed()
    run_config = {"model": {"vocab_size": len(vocab), **model_cfg}, "train": opts.to_dict(),
                  "data": {"train": str(train_text), "valid": str(valid_text) if valid_text else None,
                           "vocab": str(vocab_path)},
                  "init_model": str(init_model) if init_model else None}
    if (out_dir / RESULTS).exists() and (out_dir / RUN_CONFIG).exists():
        _check_same_run(out_dir, run_config)
        log.info("%s: training already finished", out_dir)
        return json.loads((out_dir / RESULTS).read_text())

    model = _initial_model(LMConfig(vocab_size=len(vocab), **model_cfg), opts, vocab, init_model).to(device)
    optimizer = build_optimizer(model, opts)
    t0 = time.perf_counter()
    data = _TrainData(train_text, valid_text, vocab, opts, model.cfg, world_size)
    log.info("train: %d sentences, %d words (%.2f%% OOV), %d batches/epoch; %d parameters",
             len(data.train_enc.sentences), data.train_enc.words,
             100 * data.train_enc.oov / max(1, data.train_enc.words), len(data.plan), model.num_parameters())
    progress = _resume_or_start(out_dir, run_config, model, optimizer, rank)
    ddp_model = None
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel
        ddp_model = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device != "cpu"
                                            else None)
    progress = train_loop(model, optimizer, data.plan, opts, valid=data.valid_plan, out_dir=out_dir,
                          progress=progress, device=device, rank=rank, world_size=world_size, ddp_model=ddp_model,
                          max_steps_this_run=max_steps_this_run)
    sync_diff = max_weight_difference_across_ranks(model, device) if world_size > 1 else 0.0
    if not progress["done"]:
        return {"done": False, "step": progress["step"]}
    last_valid = _evaluate_best(model, out_dir, data.valid_plan, opts, device, rank, world_size)
    results = {
        "done": True, "stop_reason": progress["stop_reason"], "steps": progress["step"],
        "epochs": progress["epoch"], "train_tokens_seen": progress["tokens"],
        "best_step": progress["best_step"], "valid_ppl": last_valid["ppl"] if last_valid else None,
        "valid_history": progress["valid"], "world_size": world_size, "max_rank_weight_diff": sync_diff,
        "parameters": model.num_parameters(), **data.word_counts(),
        "wall_seconds_this_run": time.perf_counter() - t0,
    }
    if last_valid and "log_z_mean_abs" in last_valid:
        results.update({f"valid_{k}": v for k, v in last_valid.items() if k.startswith("log_z")})
    if rank == 0:
        _write_outputs(out_dir, model, vocab, opts, results)
    if world_size > 1:
        dist.barrier()
    return results


def _options(config, overrides, seed) -> tuple[dict, TrainOptions]:
    model_cfg, opts = load_train_config(config)
    if overrides:
        try:
            opts = TrainOptions.from_dict({**opts.to_dict(), **overrides})
        except (TypeError, ValueError) as e:
            raise InputError(config, f"bad option override: {e}") from None
    if seed is not None:
        opts.seed = seed
    return model_cfg, opts


def _initial_model(cfg: LMConfig, opts: TrainOptions, vocab: Vocabulary, init_model) -> TransformerLM:
    torch.manual_seed(opts.seed)
    model = TransformerLM(cfg)
    if init_model is not None:
        from asr_lm_quant.lm.files import load_lm
        init, init_vocab = load_lm(init_model)
        if init_vocab.words != vocab.words or init.cfg != cfg:
            raise InputError(init_model, "initial model's vocabulary or architecture differs from this run's")
        model.load_state_dict(init.state_dict())
    elif opts.self_norm_alpha > 0:
        # start self-normalised: with logits near 0, an output bias of -log V makes log Z near 0
        with torch.no_grad():
            model.out.bias.fill_(-math.log(cfg.vocab_size))
    return model


class _TrainData:
    """The training batches and, with a validation text, whole validation sentences (up to the model's
    reach), so that the validation figure equals ``asr-lm-quant ppl``."""

    def __init__(self, train_text, valid_text, vocab, opts: TrainOptions, cfg: LMConfig, world_size: int):
        self.train_enc = encode_file(train_text, vocab)
        self.plan = BatchPlan(sequences(self.train_enc, vocab.bos, opts.max_len), opts.tokens_per_batch,
                              seed=opts.seed, min_rows=world_size)
        self.valid_plan, self.valid_enc = None, None
        if valid_text:
            self.valid_enc = encode_file(valid_text, vocab)
            self.valid_plan = BatchPlan(sequences(self.valid_enc, vocab.bos, cfg.max_len - 1), opts.tokens_per_batch,
                                        shuffle=False, min_rows=world_size)

    def word_counts(self) -> dict:
        v = self.valid_enc
        return {"train_words": self.train_enc.words, "train_oov": self.train_enc.oov,
                "valid_words": v.words if v else None, "valid_oov": v.oov if v else None}


def _resume_or_start(out_dir: Path, run_config: dict, model, optimizer, rank: int) -> dict:
    """The progress of the newest checkpoint (restoring model and optimizer), or a fresh start."""
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    if ckpt is not None:
        _check_same_run(out_dir, run_config)
        progress = load_checkpoint(ckpt, model, optimizer)
        if rank == 0:
            log.info("resuming from %s (step %d)", ckpt, progress["step"])
        return progress
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(out_dir / RUN_CONFIG) as f:
            json.dump(run_config, f, indent=2)
    return new_progress()


def _evaluate_best(model, out_dir: Path, valid_plan, opts: TrainOptions, device, rank, world_size) -> dict | None:
    """Load the best weights by validation perplexity into ``model`` and evaluate them again."""
    best = out_dir / "checkpoints" / BEST_WEIGHTS
    if valid_plan is None or not best.exists():
        return None
    sd = load_file(str(best))
    if model.cfg.tie_embeddings:
        sd["out.weight"] = sd["embed.weight"]
    model.load_state_dict(sd)
    return evaluate(model, valid_plan, device, bf16=opts.bf16, rank=rank, world_size=world_size,
                    log_z=opts.self_norm_alpha > 0)


def _write_outputs(out_dir: Path, model, vocab, opts: TrainOptions, results: dict):
    save_lm(out_dir, model.cpu(), vocab, extra={"train": opts.to_dict(), SELF_NORM_KEY: opts.self_norm_alpha})
    from asr_lm_quant.lm.plot import plot_training_log
    plot_training_log(out_dir / "log" / "train.jsonl", out_dir / "log" / "curve.png")
    with atomic_open(out_dir / RESULTS) as f:
        json.dump(results, f, indent=2)


def _check_same_run(out_dir: Path, run_config: dict):
    path = out_dir / RUN_CONFIG
    if not path.exists():
        return
    old = json.loads(path.read_text())
    for section in ("model", "train", "init_model"):
        if old.get(section) != json.loads(json.dumps(run_config[section])):
            raise InputError(path, f"the {section!r} settings differ from the run already in this directory; "
                                   "use another output directory (or delete this one) to start afresh")
