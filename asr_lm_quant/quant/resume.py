"""Checkpoints of quantization fine-tuning, so that an interrupted ``quantize`` resumes where it stopped.

A run is a sequence of phases (``hessian`` or ``search``, then ``ste`` or ``admm`` and ``frozen``). A checkpoint
holds the phase in progress (its step, the weights it trains, the optimizer, the method's own tensors and
numbers, the batch position, every rank's random generators) and what each finished phase produced. Resuming
restores all of it, so a resumed run takes exactly the steps of an uninterrupted one.

The files are those of every training checkpoint (``lm.checkpoint``): ``<out>/checkpoints/ckpt-00000012/`` with
``model.safetensors`` (the weights of phase ``progress["model_phase"]``), ``optimizer.safetensors`` +
``optimizer.json``, ``state.safetensors`` (quantizer state, finished phases' tensors, random generator states),
``progress.json``; ``<out>/checkpoints/latest`` names the newest complete one. Nothing is pickled. The
directory lives beside the staged outputs of ``quantize`` and is removed once they are written.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.checkpoint import (checkpoint_name, latest_checkpoint, load_model_weights, load_optimizer,
                                        read_progress, read_state, save_checkpoint)
from asr_lm_quant.lm.data import BatchPlan

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"


class BatchStream:
    """Endless training batches, epoch after epoch (order fixed by the plan's seed); its position is saved."""

    def __init__(self, plan: BatchPlan, rank: int = 0, world_size: int = 1):
        self.plan, self.rank, self.world_size = plan, rank, world_size
        self.epoch, self.index = 0, 0
        self._it = None

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            if self._it is None:
                args = (self.rank, self.world_size) if self.world_size > 1 else ()
                self._it = self.plan.iterate(self.epoch, self.index, *args) if self.index or args \
                    else self.plan.iterate(self.epoch)
            for k, b in self._it:
                self.index = k + 1
                return b
            self.epoch, self.index, self._it = self.epoch + 1, 0, None

    def position(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def seek(self, pos: dict) -> None:
        self.epoch, self.index, self._it = int(pos["epoch"]), int(pos["index"]), None


class PhaseState:
    """A method's variables that a checkpoint must hold, kept in the method's own containers.

    ``tensors``: ``{kind: {name: tensor}}`` dicts the method reads and writes (restored in place; a
    ``Parameter`` keeps its identity, so the optimizer still holds it); ``meta``: a JSON-able dict (restored by
    ``update``); ``generators``: ``torch.Generator`` objects whose state is saved."""

    def __init__(self, tensors: dict | None = None, meta: dict | None = None, generators: dict | None = None):
        self.tensors, self.meta, self.generators = tensors or {}, meta if meta is not None else {}, generators or {}

    def flat(self) -> dict[str, torch.Tensor]:
        out = {f"{kind}/{name}": t.detach().contiguous().cpu()
               for kind, d in self.tensors.items() for name, t in d.items()}
        out.update({f"generator/{name}": g.get_state() for name, g in self.generators.items()})
        return out

    def load(self, flat: dict[str, torch.Tensor], meta: dict, device) -> None:
        for key, value in flat.items():
            kind, name = key.split("/", 1)
            if kind == "generator":
                self.generators[name].set_state(value)
                continue
            d = self.tensors[kind]
            old = d.get(name)
            if isinstance(old, torch.nn.Parameter):
                with torch.no_grad():
                    old.copy_(value)
            else:
                d[name] = value.to(device)
        self.meta.update(meta)


class Checkpoints:
    """The checkpoints of one run in ``root``; ``run`` (a JSON-able dict) identifies the run.

    Collective under ``torchrun``: every rank calls ``save``/``finish`` (the random generator states are
    gathered); rank 0 writes."""

    def __init__(self, root, every: int, run: dict, rt):
        self.root, self.every, self.run, self.rt = Path(root), every, run, rt
        self.progress = {"run": run, "seq": 0, "finished": {}, "current": None, "model_phase": None}
        self.done_tensors: dict[str, torch.Tensor] = {}
        self.path: Path | None = None

    # ---- reading

    def load(self, discard_other: bool = False) -> bool:
        """Read the newest checkpoint, if any; True if there is one to resume. One of another run is an error,
        or with ``discard_other`` removed."""
        path = latest_checkpoint(self.root)
        if path is None:
            return False
        progress, tensors = read_progress(path), read_state(path)
        old = json.loads(json.dumps(progress.get("run")))
        if old != json.loads(json.dumps(self.run)):
            if discard_other:
                self.rt.barrier()
                if self.rt.is_main:
                    shutil.rmtree(self.root)
                self.rt.barrier()
                return False
            keys = sorted(k for k in set(old or {}) | set(self.run) if (old or {}).get(k) != self.run.get(k))
            raise InputError(self.root, f"holds a checkpoint of another quantization run ({', '.join(keys)} "
                                        "differ); give --overwrite to discard it, or delete it")
        self.progress, self.path = progress, path
        self.done_tensors = {k: v for k, v in tensors.items() if k.startswith("done/")}
        self._tensors = tensors
        log.info("resuming from %s (%s)", path, self.describe())
        return True

    def describe(self) -> str:
        cur = self.progress["current"]
        if cur is not None:
            return f"{cur['phase']} step {cur['step']}"
        return "after " + ", ".join(self.progress["finished"]) if self.progress["finished"] else "start"

    def finished(self, phase: str):
        """``(meta, tensors)`` of a finished phase, or None."""
        if phase not in self.progress["finished"]:
            return None
        prefix = f"done/{phase}/"
        return (self.progress["finished"][phase],
                {k[len(prefix):]: v for k, v in self.done_tensors.items() if k.startswith(prefix)})

    def load_model_of(self, phase: str, model) -> bool:
        """Load the checkpoint's weights into ``model`` if they are those of ``phase``."""
        if self.path is None or self.progress["model_phase"] != phase:
            return False
        load_model_weights(self.path, model)
        return True

    def restore(self, phase: str, model, optimizer, state: PhaseState | None, stream: BatchStream):
        """Restore a phase in progress; returns its ``current`` record (step, history, window) or None."""
        cur = self.progress["current"]
        if self.path is None or cur is None or cur["phase"] != phase:
            return None
        device = self.rt.device
        self.load_model_of(phase, model)
        load_optimizer(self.path, optimizer)
        if state is not None:
            mine = {k[len("state/"):]: v for k, v in self._tensors.items() if k.startswith("state/")}
            state.load(mine, cur["meta"], device)
        stream.seek(cur["stream"])
        torch.set_rng_state(self._tensors[f"rng/cpu/{self.rt.rank}"])
        if device.type == "cuda":
            torch.cuda.set_rng_state(self._tensors[f"rng/cuda/{self.rt.rank}"], device)
        return cur

    # ---- writing

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, phase: str, step: int, model, optimizer, state: PhaseState | None, stream: BatchStream,
             hist: list, window: list) -> Path | None:
        """Checkpoint a phase in progress after ``step`` steps."""
        tensors = {f"state/{k}": v for k, v in (state.flat() if state is not None else {}).items()}
        cpu = self.rt.gather(torch.get_rng_state())
        tensors.update({f"rng/cpu/{r}": s for r, s in enumerate(cpu)})
        if self.rt.device.type == "cuda":
            cuda = self.rt.gather(torch.cuda.get_rng_state(self.rt.device))
            tensors.update({f"rng/cuda/{r}": s for r, s in enumerate(cuda)})
        current = {"phase": phase, "step": step, "hist": hist, "window": window, "stream": stream.position(),
                   "meta": state.meta if state is not None else {}}
        return self._write(model, phase, optimizer, tensors, current)

    def finish(self, phase: str, meta: dict, model=None, tensors: dict | None = None) -> Path | None:
        """Record a finished phase: what it produced (``meta`` JSON, ``tensors``), and ``model``'s weights."""
        self.progress["finished"][phase] = meta
        self.done_tensors.update({f"done/{phase}/{k}": v.detach().contiguous().cpu()
                                  for k, v in (tensors or {}).items()})
        return self._write(model, phase if model is not None else self.progress["model_phase"], None, {}, None,
                           keep_model=model is None)

    def _write(self, model, model_phase, optimizer, tensors, current, keep_model=False) -> Path | None:
        self.progress.update(current=current, seq=self.progress["seq"] + 1, model_phase=model_phase)
        final = None
        if self.rt.is_main:
            final = save_checkpoint(self.root, self.progress["seq"], self.progress, model=model, optimizer=optimizer,
                                    tensors={**tensors, **self.done_tensors},
                                    model_from=self.path if keep_model else None)
        self.rt.barrier()
        self.path = self.root / checkpoint_name(self.progress["seq"])
        return final

    def remove(self) -> None:
        """Drop the checkpoints once the run's outputs are written (rank 0)."""
        if self.rt.is_main:
            shutil.rmtree(self.root, ignore_errors=True)
