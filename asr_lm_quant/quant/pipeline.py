"""One quantization run from a configuration: load, quantize by a method, pack, reload, evaluate, record.

The output directory is a packed model directory (``packed.py``) plus ``quant_config.json`` (every option),
``results.json`` (sizes, perplexities, timings, the method's record) beside it. The perplexities are those
of the model loaded back from the packed file, i.e. exactly what a user of the directory gets.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr_lm_quant.atomic import check_writable
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import CONFIG as MODEL_CONFIG, SELF_NORM_KEY, VOCAB, declared_self_norm_alpha
from asr_lm_quant.quant.allocate import budget_bits, group_bits_cost
from asr_lm_quant.quant.methods import (RunContext, all_methods, config_defaults, config_types, get_method,
                                       plan_trainers, text_batches)
from asr_lm_quant.quant.options import FinetuneOptions
from asr_lm_quant.quant.packed import PACKED, PLAN, load_any_lm, load_packed, save_packed
from asr_lm_quant.quant.plan import float_parameters, group_names, group_views
from asr_lm_quant.quant.parallel import setup_runtime
from asr_lm_quant.quant.quantizers import MAX_BITS
from asr_lm_quant.quant.resume import CHECKPOINTS, Checkpoints
from asr_lm_quant.quant.train import evaluate_ppl
from asr_lm_quant.text.outdir import staged_output

log = logging.getLogger(__name__)

RESULTS = "results.json"
CONFIG = "quant_config.json"


@dataclass
class QuantConfig:
    """Every option of a run. The entries the methods add (``admm``, ``search``, ``hessian_tol``, ...: see
    ``Method.config``) are in ``options`` and read as attributes (``cfg.admm``); ``to_dict`` lists them beside
    the others, as ``quant_config.json`` and the systems files spell them."""
    model: str
    out: str
    method: str
    train_text: str | None = None
    valid_text: str | None = None
    test_text: str | None = None
    bits: int | None = None                 # uniform precision (ptq, ste, admm)
    budget_bits: float | None = None        # mixed precision budget: average bits per weight
    compression: float | None = None        # ... or compression ratio of the whole model
    budget_mb: float | None = None          # ... or total model size in MB (1e6 bytes)
    candidates: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    per_row: bool = False
    bands: int | list[int] | None = None    # vocabulary-sized matrices in row bands (plan.band_edges)
    tokens_per_batch: int = 2048
    max_len: int = 128
    eval_tokens_per_batch: int = 8192
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)
    plan_trainer: str = "admm"              # how the mixed methods train their chosen plan: admm or ste
    seed: int = 0
    device: str = "cpu"                     # cpu, cuda, cuda:N (under torchrun: cpu or cuda)
    checkpoint_every: int = 100             # fine-tuning steps between checkpoints (0: only on a signal)
    options: dict = field(default_factory=config_defaults)  # the methods' entries

    def __getattr__(self, name):  # only called for names that are not fields: the methods' entries
        options = self.__dict__.get("options")
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self):
        d = asdict(self)
        return {**d, **d.pop("options")}

    @classmethod
    def from_dict(cls, d: dict, source=None) -> "QuantConfig":
        own = {f.name for f in dataclasses.fields(cls)} - {"options"}
        options, types = config_defaults(), config_types()
        try:
            unknown = sorted(set(d) - own - set(options))
            if unknown:
                raise TypeError(f"unexpected key(s) {', '.join(map(repr, unknown))}")
            for key, value in d.items():
                if key in options:
                    options[key] = types[key](**value) if key in types and isinstance(value, dict) else value
            kw = {k: v for k, v in d.items() if k in own}
            if isinstance(kw.get("finetune"), dict):
                kw["finetune"] = FinetuneOptions(**kw["finetune"])
            return cls(**kw, options=options)
        except (TypeError, ValueError) as e:
            raise InputError(source, f"bad quantization config: {e}") from None


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _budget(model, cfg: QuantConfig) -> float:
    groups = group_views(model, group_names(model, cfg.bands))
    sizes = {n: p.numel() for n, p in groups.items()}
    nfloat = sum(p.numel() for p in float_parameters(model).values())
    given = [x is not None for x in (cfg.budget_bits, cfg.compression, cfg.budget_mb)]
    if sum(given) != 1:
        raise InputError(None, f"method {cfg.method} needs exactly one of --budget-bits, --compression, --budget-mb")
    if cfg.budget_mb is not None:
        return cfg.budget_mb * 8e6 - 32 * nfloat
    return budget_bits(sizes, nfloat, avg_bits=cfg.budget_bits, compression=cfg.compression)


OUTPUTS = (PACKED, VOCAB, PLAN, MODEL_CONFIG, CONFIG, RESULTS)


def check_config(cfg: QuantConfig) -> None:
    """Everything that can be checked before loading a model: methods, precisions, sizes, input files."""
    method = get_method(cfg.method)
    trainers = plan_trainers()
    if cfg.plan_trainer not in trainers:
        raise InputError(None, f"unknown plan trainer {cfg.plan_trainer!r} (one of {', '.join(trainers)})",
                         key="plan_trainer")
    uniform = not method.mixed
    if uniform and cfg.bits is None:
        raise InputError(None, f"method {cfg.method} needs --bits", key="bits")
    for b in ([cfg.bits] if uniform else list(cfg.candidates)):
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BITS:
            raise InputError(None, f"precision {b!r}: must be an integer number of bits, 1..{MAX_BITS}",
                             key="bits" if uniform else "candidates")
    if not uniform and not cfg.candidates:
        raise InputError(None, "no candidate precisions", key="candidates")
    if cfg.checkpoint_every < 0:
        raise InputError(None, f"checkpoint_every must not be negative ({cfg.checkpoint_every})",
                         key="checkpoint_every")
    for name in ("tokens_per_batch", "eval_tokens_per_batch", "max_len"):
        if getattr(cfg, name) < 1:
            raise InputError(None, f"{name} must be at least 1, not {getattr(cfg, name)}", key=name)
    for m in all_methods().values():  # every method's entries are in every configuration
        if m.check is not None:
            m.check(cfg)
    if cfg.finetune.steps < 0:
        raise InputError(None, f"steps must not be negative ({cfg.finetune.steps})", key="steps")
    for name in method.texts:
        if getattr(cfg, name) is None:
            raise InputError(None, f"method {cfg.method} needs --{name.split('_')[0]}", key=name)
    for name in ("train_text", "valid_text", "test_text"):
        path = getattr(cfg, name)
        if path is not None and not Path(path).is_file():
            raise InputError(path, "text file does not exist", key=name)


def _check_budget(model, cfg: QuantConfig) -> float:
    """The mixed-precision size budget, refused at once if the smallest candidates cannot meet it."""
    budget = _budget(model, cfg)
    groups = group_views(model, group_names(model, cfg.bands))
    smallest = sum(min(group_bits_cost(p.numel(), p.shape[0], b, cfg.per_row) for b in cfg.candidates)
                   for p in groups.values())
    if budget < smallest:
        raise InputError(None, f"size budget {budget / 8e6:.4f} MB of weights is below the smallest the candidate "
                               f"precisions {cfg.candidates} reach ({smallest / 8e6:.4f} MB)", key="budget")
    return budget


def _check_out(out: Path, overwrite: bool) -> None:
    existing = [n for n in OUTPUTS if (out / n).exists()]
    if existing and not overwrite:
        raise InputError(out, f"already holds {', '.join(existing)}"
                              + ("" if RESULTS in existing else " (an incomplete result)")
                              + "; give --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(out, "is not a directory")
    check_writable(out / RESULTS, overwrite=True)


def run(cfg: QuantConfig, overwrite: bool = False) -> dict:
    """Run one configuration; returns the results dict (also written to ``<out>/results.json``).

    The output directory is written all at once when everything succeeded (a failure leaves it as it was);
    an existing result, complete or not, is replaced only with ``overwrite``. Fine-tuning checkpoints go to
    ``<out>/checkpoints/`` (``resume``): after an interruption the same configuration resumes from them, and
    they are removed once the outputs are written. Under ``torchrun`` every rank runs this (data-parallel,
    ``parallel``); rank 0 writes the outputs and returns the results, the other ranks return ``{}``."""
    check_config(cfg)
    method = get_method(cfg.method)
    out = Path(cfg.out)
    _check_out(out, overwrite)
    rt = setup_runtime(cfg.device)
    seed_everything(cfg.seed)
    model, vocab = load_any_lm(cfg.model)
    model.float().to(rt.device)
    try:
        group_names(model, cfg.bands)
    except (TypeError, ValueError) as e:
        raise InputError(None, f"bad row bands {cfg.bands!r}: {e}", key="bands") from None
    budget = _check_budget(model, cfg) if method.mixed else None
    needs_train = "train_text" in method.texts
    # Read every text now, so that a bad file stops the run before any training.
    evals = {split: text_batches(getattr(cfg, f"{split}_text"), vocab, cfg, cfg.eval_tokens_per_batch, False)
             for split in ("valid", "test") if getattr(cfg, f"{split}_text")}
    train = text_batches(cfg.train_text, vocab, cfg, cfg.tokens_per_batch, True, rt.world_size) if needs_train else None
    # the full-precision model teaches the quantized one (finetune.distill)
    teacher = copy.deepcopy(model).eval() if needs_train and cfg.finetune.distill > 0 else None
    if needs_train:
        rt.checkpoints = Checkpoints(out / CHECKPOINTS, cfg.checkpoint_every, _run_identity(cfg, rt), rt)
        rt.checkpoints.load(discard_other=overwrite)
    t0 = time.perf_counter()
    plan, record = method.handler(RunContext(cfg, model, vocab, train, teacher, rt, budget))
    train_s = time.perf_counter() - t0
    if not rt.is_main:  # rank 0 writes the outputs
        rt.barrier()
        return {}
    model.cpu()
    results = _write_outputs(cfg, model, plan, vocab, record, train_s, rt, evals, overwrite)
    rt.barrier()
    if rt.checkpoints is not None:
        rt.checkpoints.remove()
    log.info("%s: %.3f MB (%.1fx), valid ppl %s, test ppl %s", out, results["size_mb"], results["compression"],
             results.get("valid_ppl"), results.get("test_ppl"))
    return results


def _write_outputs(cfg: QuantConfig, model, plan, vocab, record, train_s, rt, evals, overwrite) -> dict:
    """Pack the model, load it back, evaluate that and write the output directory at once."""
    with staged_output(Path(cfg.out), OUTPUTS, overwrite=overwrite) as stage:
        # the self-normalisation the source was trained with goes with it (fine-tuning here has no such term)
        save_packed(stage, model, plan, vocab, extra={"quantization": {"method": cfg.method},
                                                      SELF_NORM_KEY: declared_self_norm_alpha(cfg.model)})
        qmodel, _, plan = load_packed(stage)
        size = plan.size_report(qmodel)
        file_bytes = (stage / PACKED).stat().st_size
        results = {"method": cfg.method, "bits": cfg.bits, "plan_bits": plan.bits(), "avg_bits": size["avg_bits"],
                   "size_mb": file_bytes / 1e6, "ideal_mb": size["ideal_bytes"] / 1e6,
                   "fp32_mb": size["fp32_bytes"] / 1e6, "compression": size["fp32_bytes"] / file_bytes,
                   "ideal_compression": size["compression"], "train_seconds": train_s,
                   "sensitivity_seconds": record.get("sensitivity_seconds"),
                   "device": str(rt.device), "world_size": rt.world_size, "record": record}
        results.update(evaluate_texts(qmodel.to(rt.device), vocab, cfg, evals))
        with open(stage / CONFIG, "w", encoding="utf-8") as f:
            json.dump(cfg.to_dict(), f, indent=2)
        with open(stage / RESULTS, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return results


def _run_identity(cfg: QuantConfig, rt) -> dict:
    """What a checkpoint must match to be resumed: the configuration (less where it goes and how often it is
    checkpointed) and the processes (their random generators are in it)."""
    run = {k: v for k, v in cfg.to_dict().items() if k not in ("out", "checkpoint_every")}
    return {**run, "world_size": rt.world_size, "device_type": rt.device.type}


def evaluate_texts(model, vocab, cfg: QuantConfig, plans: dict | None = None) -> dict:
    """Perplexities on the valid and test texts (``plans``: their batch plans, if already read)."""
    res = {}
    for split in ("valid", "test"):
        path = getattr(cfg, f"{split}_text")
        if path:
            plan = (plans or {}).get(split) or text_batches(path, vocab, cfg, cfg.eval_tokens_per_batch, False)
            ev = evaluate_ppl(model, plan, cfg.finetune.bf16)
            res[f"{split}_ppl"] = ev["ppl"]
            res[f"{split}_tokens"] = ev["tokens"]
    return res
