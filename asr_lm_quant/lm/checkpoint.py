"""Training checkpoints: model and optimizer tensors in safetensors, progress in JSON (no pickle).

``<out>/checkpoints/step-00000500/`` holds ``model.safetensors``, ``optimizer.safetensors``,
``optimizer.json`` (parameter groups and non-tensor state), ``progress.json`` and optionally
``extra.safetensors`` (state of a caller's hook, e.g. quantizer variables). ``<out>/checkpoints/latest``
names the newest complete one; a directory is renamed into place only once it is complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import state_for_saving

LATEST = "latest"


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state dict into flat tensors (``"<param>.<name>"``) and JSON-able metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict, meta: dict):
    state: dict = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, st in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(ckpt_root, step: int, model, optimizer, progress: dict, extra_state=None,
                    keep: int = 2) -> Path:
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(state_for_saving(model), str(tmp / "model.safetensors"))
    tensors, meta = optimizer_to_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    if extra_state is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra_state.state_dict().items()},
                  str(tmp / "extra.safetensors"))
    (tmp / "progress.json").write_text(json.dumps(progress, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    with atomic_open(ckpt_root / LATEST) as f:
        f.write(name + "\n")
    old = sorted(p for p in ckpt_root.glob("step-*") if p.is_dir() and p.name != name)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root) -> Path | None:
    f = Path(ckpt_root) / LATEST
    if not f.exists():
        return None
    path = Path(ckpt_root) / f.read_text().strip()
    if not (path / "progress.json").exists():
        raise InputError(f, f"names {path.name}, which is missing or incomplete")
    return path


def load_checkpoint(path, model, optimizer, extra_state=None) -> dict:
    """Restore model and optimizer in place; return the progress dict."""
    path = Path(path)
    try:
        sd = load_file(str(path / "model.safetensors"))
        if model.cfg.tie_embeddings:
            sd.setdefault("out.weight", sd.get("embed.weight"))
        model.load_state_dict(sd)
        optimizer_from_tensors(optimizer, load_file(str(path / "optimizer.safetensors")),
                               json.loads((path / "optimizer.json").read_text()))
        if extra_state is not None:
            extra_state.load_state_dict(load_file(str(path / "extra.safetensors")))
        return json.loads((path / "progress.json").read_text())
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise InputError(path, f"cannot restore checkpoint: {e}") from None
