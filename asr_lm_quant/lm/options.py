"""Training options and the configuration files that hold them (``{"model": {...}, "train": {...}}``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from asr_lm_quant.errors import InputError, read_json_file
from asr_lm_quant.lm.model import LMConfig


@dataclass
class TrainOptions:
    optimizer: str = "adamw"        # "adamw", "adam" or "sgd" (with momentum)
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9           # sgd only
    betas: tuple = (0.9, 0.98)      # adam/adamw
    schedule: str = "cosine"        # "cosine", "linear", "inv_sqrt", "constant" (all after warm-up) or "plateau"
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05      # cosine/linear decay floor, as a fraction of lr
    plateau_factor: float = 0.5     # "plateau": lr multiplier when validation stops improving (Kaldi halves)
    min_lr: float = 1e-6            # "plateau": stop once the lr would fall below this
    max_epochs: int = 10
    max_steps: int = 0              # 0: no limit besides max_epochs
    tokens_per_batch: int = 4096    # global batch (all processes together), padding included
    max_len: int = 128              # longest training sequence; longer sentences are cut into windows
    clip_norm: float = 1.0          # 0 disables gradient clipping
    bf16: bool = False              # bf16 autocast for forward/backward (weights and optimizer stay fp32)
    self_norm_alpha: float = 0.0    # weight of mean((log Z)^2) in the loss: sum_w p(w|h) kept near 1, so scoring
                                    # may skip the normaliser (0: off)
    eval_every: int = 0             # steps between validation runs; 0: at the end of each epoch only
    patience: int = 3               # validation runs without improvement before early stopping (0: never stop)
    min_improvement: float = 0.0    # relative ppl improvement that counts as improvement
    checkpoint_every: int = 500     # steps between checkpoints (one is also written on every validation run)
    keep_checkpoints: int = 2
    log_every: int = 50
    seed: int = 1

    def __post_init__(self):
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"optimizer must be adamw, adam or sgd, not {self.optimizer!r}")
        if self.schedule not in ("cosine", "linear", "inv_sqrt", "constant", "plateau"):
            raise ValueError(f"unknown schedule {self.schedule!r}")
        self.betas = tuple(self.betas)
        if not self.self_norm_alpha >= 0:
            raise ValueError(f"self_norm_alpha must be >= 0, not {self.self_norm_alpha!r}")
        for name in ("tokens_per_batch", "max_len", "max_epochs", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        return cls(**d)


def load_train_config(path) -> tuple[dict, TrainOptions]:
    """Read a configuration file: ``model`` (LMConfig fields except vocab_size) and ``train`` options.

    Returns the model dict (checked by building an LMConfig with a placeholder vocabulary) and the options.
    """
    cfg = read_json_file(path, "configuration file")
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise InputError(path, "expected an object with a 'model' section (and optionally 'train')")
    model = {k: v for k, v in cfg["model"].items() if k != "vocab_size"}
    for section, build in (("model", lambda: LMConfig(vocab_size=2, **model)),
                           ("train", lambda: TrainOptions.from_dict(cfg.get("train", {})))):
        try:
            built = build()
        except (TypeError, ValueError) as e:
            raise InputError(path, str(e), key=section) from None
        if section == "train":
            opts = built
    extra = set(cfg) - {"model", "train", "description"}
    if extra:
        raise InputError(path, f"unknown section(s) {sorted(extra)}")
    return model, opts
