"""Training checkpoints, the one format of LM training and quantization fine-tuning (no pickle).

``<root>/ckpt-00000500/`` holds ``progress.json`` (everything JSON-able: step, position in the data,
histories, the caller's own numbers) and, as the caller has them, ``model.safetensors``,
``optimizer.safetensors`` + ``optimizer.json`` (parameter groups and non-tensor state) and
``state.safetensors`` (any other tensors: quantizer variables, random generator states). ``<root>/latest``
names the newest complete one; a directory is renamed into place only once it is complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import state_for_saving

LATEST = "latest"
MODEL = "model.safetensors"
STATE = "state.safetensors"


def checkpoint_name(number: int) -> str:
    return f"ckpt-{number:08d}"


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


def save_checkpoint(root, number: int, progress: dict, *, model=None, optimizer=None,
                    tensors: dict | None = None, model_from: Path | None = None, keep: int = 1) -> Path:
    """Write checkpoint ``number`` under ``root`` and point ``latest`` at it; keep the newest ``keep``.
    ``model_from``: a checkpoint whose model file is copied when ``model`` is None (the weights did not change)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(number)
    final, tmp = root / name, root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if model is not None:
        save_file(state_for_saving(model), str(tmp / MODEL))
    elif model_from is not None and (Path(model_from) / MODEL).exists():
        shutil.copyfile(Path(model_from) / MODEL, tmp / MODEL)
    if optimizer is not None:
        opt_tensors, meta = optimizer_to_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    if tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp / STATE))
    (tmp / "progress.json").write_text(json.dumps(progress, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    with atomic_open(root / LATEST) as f:
        f.write(name + "\n")
    old = sorted(p for p in root.glob("ckpt-*") if p.is_dir() and p.name != name)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root) -> Path | None:
    """The newest complete checkpoint under ``root``, or None if there is none."""
    f = Path(root) / LATEST
    if not f.exists():
        return None
    path = Path(root) / f.read_text().strip()
    if not (path / "progress.json").exists():
        raise InputError(f, f"names {path.name}, which is missing or incomplete")
    return path


def read_progress(path) -> dict:
    return _reading(path, lambda: json.loads((Path(path) / "progress.json").read_text()))


def read_state(path) -> dict:
    """The checkpoint's other tensors (empty if it has none)."""
    f = Path(path) / STATE
    return _reading(path, lambda: load_file(str(f)) if f.exists() else {})


def load_model_weights(path, model) -> None:
    """Load the checkpoint's model file into ``model`` (a tied output matrix follows the embedding)."""
    def load():
        sd = load_file(str(Path(path) / MODEL))
        if model.cfg.tie_embeddings:
            sd.setdefault("out.weight", sd.get("embed.weight"))
        with torch.no_grad():
            model.load_state_dict(sd)
    _reading(path, load)


def load_optimizer(path, optimizer) -> None:
    path = Path(path)
    _reading(path, lambda: optimizer_from_tensors(optimizer, load_file(str(path / "optimizer.safetensors")),
                                                  json.loads((path / "optimizer.json").read_text())))


def _reading(path, read):
    try:
        return read()
    except (OSError, RuntimeError, ValueError, KeyError, SafetensorError) as e:
        raise InputError(path, f"cannot restore checkpoint: {e}; delete it to start afresh") from None


def load_checkpoint(path, model, optimizer, extra_state=None) -> dict:
    """Restore model, optimizer and ``extra_state`` (``load_state_dict`` of tensors) in place; return the
    progress dict."""
    load_model_weights(path, model)
    load_optimizer(path, optimizer)
    if extra_state is not None:
        extra_state.load_state_dict(read_state(path))
    return read_progress(path)
