"""LM model directories: ``config.json`` (architecture), ``model.safetensors`` (weights), ``words.txt``.

The architecture is a Transformer, or an LSTM when the config says ``"arch": "lstm"``.

Nothing here unpickles: weights are safetensors, everything else is JSON or text.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from asr_lm_quant.atomic import atomic_path, atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.arch import build_model, config_from_dict
from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.text.vocab import Vocabulary

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
VOCAB = "words.txt"
# config.json key: the weight of the self-normalisation term the model was trained with (0 or absent: none)
SELF_NORM_KEY = "self_norm_alpha"


def state_for_saving(model: TransformerLM | LSTMLM) -> dict:
    """The state dict with tied weights stored once (safetensors refuses shared storage)."""
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        sd.pop("out.weight", None)
    return sd


def save_lm(model_dir, model: TransformerLM | LSTMLM, vocab: Vocabulary, extra: dict | None = None):
    """Write a complete model directory (each file atomically)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    sd = state_for_saving(model)
    cfg_json = json.dumps(model.cfg.to_dict())
    with atomic_path(model_dir / WEIGHTS) as tmp:
        save_file(sd, str(tmp), metadata={"format": "asr-lm-quant-lm", "config": cfg_json,
                                          "sha256": content_digest(sd, cfg_json, "\n".join(vocab.words))})
    vocab.save(model_dir / VOCAB)
    with atomic_open(model_dir / CONFIG) as f:
        json.dump({"model": model.cfg.to_dict(), **(extra or {})}, f, indent=2)


def content_digest(tensors: dict, *texts: str) -> str:
    """SHA-256 of the tensors (by name), then of ``texts`` (config, vocabulary)."""
    import hashlib
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy())  # the buffer itself, not a copy
    for t in texts:
        h.update(len(t.encode()).to_bytes(8, "little"))
        h.update(t.encode())
    return h.hexdigest()


def load_config(model_dir) -> LMConfig | LSTMConfig:
    path = Path(model_dir) / CONFIG
    if not path.exists():
        raise InputError(path, "model config does not exist (is this an LM directory?)")
    try:
        return config_from_dict(json.loads(path.read_text())["model"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(path, f"not a valid LM config: {e}") from None


def declared_self_norm_alpha(model_dir) -> float:
    """The self-normalisation weight ``config.json`` declares the model was trained with (0 when absent)."""
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise InputError(model_dir, f"not a model directory: it has no {CONFIG}")
    try:
        value = json.loads(path.read_text()).get(SELF_NORM_KEY, 0.0)
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise InputError(path, f"cannot read the model config: {e}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(path, f"{SELF_NORM_KEY} must be a number >= 0, not {value!r}", key=SELF_NORM_KEY)
    return float(value)


def check_self_normalized(model_dir, force: bool = False) -> float:
    """Refuse to skip the normaliser of a model not trained to be self-normalised (its scores would not be
    log-probabilities), unless ``force``; returns the declared weight."""
    alpha = declared_self_norm_alpha(model_dir)
    if alpha == 0 and not force:
        raise InputError(Path(model_dir) / CONFIG,
                         f"the model was not trained with self-normalisation ({SELF_NORM_KEY} is 0 or absent), so "
                         "its scores without the normaliser are not log-probabilities; train with "
                         "--self-norm-alpha, or give --force-self-normalized to use them anyway")
    return alpha


def load_lm(model_dir, device="cpu") -> tuple[TransformerLM | LSTMLM, Vocabulary]:
    """Load a model directory written by :func:`save_lm`; the model is in eval mode."""
    model_dir = Path(model_dir)
    cfg = load_config(model_dir)
    vocab = Vocabulary.load(model_dir / VOCAB)
    if len(vocab) != cfg.vocab_size:
        raise InputError(model_dir / VOCAB, f"{len(vocab)} words but the model expects {cfg.vocab_size}")
    wpath = model_dir / WEIGHTS
    if not wpath.exists():
        raise InputError(wpath, "model weights do not exist")
    try:
        sd = load_file(str(wpath))
        with safe_open(str(wpath), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(wpath, f"cannot read safetensors file: {e}") from None
    if "sha256" in meta:  # written by save_lm (models from before it carry none)
        try:
            embedded = config_from_dict(json.loads(meta.get("config", "")))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise InputError(wpath, f"bad config metadata: {e}", key="config") from None
        if embedded != cfg:
            raise InputError(model_dir / CONFIG, "architecture differs from the one the weights were saved with "
                                                 "(edited by hand?)")
        if content_digest(sd, meta["config"], "\n".join(vocab.words)) != meta["sha256"]:
            raise InputError(wpath, "checksum mismatch: the weights are corrupt, or words.txt is not the one they "
                                    "were saved with", key="sha256")
    model = build_model(cfg)
    if cfg.tie_embeddings:
        sd.setdefault("out.weight", sd.get("embed.weight"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise InputError(wpath, f"weights do not match the config: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval(), vocab
