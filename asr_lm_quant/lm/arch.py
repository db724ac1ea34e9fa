"""Which model class a config describes: the Transformer (configs without ``arch``) or the LSTM."""

from __future__ import annotations

from asr_lm_quant.lm.lstm import ARCH as LSTM_ARCH, LSTMConfig, LSTMLM
from asr_lm_quant.lm.model import LMConfig, TransformerLM


def config_from_dict(d: dict) -> LMConfig | LSTMConfig:
    """The config of a ``config.json`` ``model`` entry (ValueError/TypeError if it is not a valid one)."""
    if not isinstance(d, dict):
        raise TypeError(f"model config must be a JSON object, not {type(d).__name__}")
    arch = d.get("arch", "transformer")
    if arch == LSTM_ARCH:
        return LSTMConfig.from_dict(d)
    if arch != "transformer":
        raise ValueError(f"unknown model arch {arch!r} (transformer or {LSTM_ARCH})")
    return LMConfig.from_dict({k: v for k, v in d.items() if k != "arch"})


def build_model(cfg: LMConfig | LSTMConfig) -> TransformerLM | LSTMLM:
    return LSTMLM(cfg) if isinstance(cfg, LSTMConfig) else TransformerLM(cfg)
