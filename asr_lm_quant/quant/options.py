"""Options of fine-tuning and of the methods that share them, kept free of torch so the command line starts
quickly. The methods themselves are the modules of ``asr_lm_quant.quant.methods``."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class FinetuneOptions:
    steps: int = 200            # optimizer steps
    lr: float = 3e-4            # Adam learning rate (warm-up, then cosine decay to 0)
    warmup: int = 10
    clip_norm: float = 1.0
    bf16: bool | str = False    # bf16 autocast of the forward pass; "auto": where the CPU has native bf16
    distill: float = 0.0        # weight d of the distillation term: (1 - d) CE + d KL(full precision || model)
    seed: int = 0
    log_every: int = 20

    def __post_init__(self):
        if self.bf16 == "auto":
            from asr_lm_quant.lm.device import cpu_has_fast_bf16
            self.bf16 = cpu_has_fast_bf16()
        elif not isinstance(self.bf16, bool):
            raise ValueError(f"bf16: true, false or \"auto\", not {self.bf16!r}")

    def to_dict(self):
        return asdict(self)


@dataclass
class AdmmOptions:
    rho: float = 1e-2            # penalty weight of (rho/2)||W - Q + U||^2
    rho_growth: float = 1.5      # rho *= growth after every projection
    rho_max: float = 10.0
    project_every: int = 20      # optimizer steps between projections
    lr: float | None = None      # learning rate of the W steps (default: the fine-tuning one)
    final_steps: int = 0         # the last of the fine-tuning steps: after W = Q, the 32-bit parameters and
    final_lr: float | None = None  # the scales train with the codes frozen, at this rate (default: fine-tuning)

    def to_dict(self):
        return asdict(self)


@dataclass
class SearchOptions:
    gamma: float = 1.0         # weight of the size penalty (expected size / budget)
    arch_lr: float = 0.05      # Adam learning rate of the logits
    gumbel: bool = False       # Gumbel-softmax samples instead of the plain softmax
    tau: float = 1.0           # Gumbel-softmax temperature
    fill_budget: bool = True   # after the argmax, raise precisions greedily while the budget allows

    def to_dict(self):
        return asdict(self)
