"""A causal Transformer language model.

Every weight matrix is a plain ``nn.Linear`` (attention in/out projections, feed-forward in/out) or the
``nn.Embedding``, so quantization can treat them as weight groups. The layout mirrors Kaldi's pytorchnn
``TransformerModel`` (scaled embedding, sinusoidal positions, fused q/k/v projection, output bias), so its
models import one-to-one, but it is batch-first and can run incrementally with a key/value cache.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


def config_from_dict(cls, d: dict, what: str):
    """A configuration dataclass from its dict, refusing keys it does not have (a typo, or another model's)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} config keys: {sorted(unknown)}")
    return cls(**d)


@dataclass
class LMConfig:
    vocab_size: int
    d_model: int = 256
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 1024
    dropout: float = 0.1
    tie_embeddings: bool = True
    norm: str = "pre"            # "pre" (LayerNorm before each sublayer) or "post" (PyTorch/Kaldi default)
    activation: str = "gelu"     # "gelu" or "relu"
    max_len: int = 5000
    scale_embedding: bool = True  # multiply embeddings by sqrt(d_model), as Kaldi's model does
    final_norm: bool | None = None  # LayerNorm before the output layer; default: on for pre-norm only
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', not {self.norm!r}")
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', not {self.activation!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.final_norm is None:
            self.final_norm = self.norm == "pre"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        return config_from_dict(cls, d, "LM")


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """[max_len, d_model]: sin on even, cos on odd dimensions, base 10000."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class SelfAttention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.in_proj = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x, past=None, attn_mask=None):
        B, T, D = x.shape
        H = self.n_heads
        q, k, v = self.in_proj(x).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # each [B, H, T, dh]
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        drop = self.dropout if self.training else 0.0
        if hasattr(attn_mask, "attend"):  # a sparse layout that computes the attention itself
            y = attn_mask.attend(q, k, v)
        elif attn_mask is None and past is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            if attn_mask is None:  # new positions see all the past and themselves causally
                attn_mask = causal_mask(T, k.shape[2] - T, x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, D)
        return self.out_proj(y), (k, v)


def causal_mask(T: int, past_len: int, device) -> torch.Tensor:
    """Boolean [T, past_len + T] mask: True where attention is allowed."""
    return torch.ones(T, past_len + T, dtype=torch.bool, device=device).tril(diagonal=past_len)


class FeedForward(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.attn = SelfAttention(cfg)
        self.ff = FeedForward(cfg)
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.drop1 = nn.Dropout(cfg.dropout)
        self.drop2 = nn.Dropout(cfg.dropout)

    def forward(self, x, past=None, attn_mask=None):
        if self.pre:
            a, kv = self.attn(self.norm1(x), past, attn_mask)
            x = x + self.drop1(a)
            x = x + self.drop2(self.ff(self.norm2(x)))
        else:
            a, kv = self.attn(x, past, attn_mask)
            x = self.norm1(x + self.drop1(a))
            x = self.norm2(x + self.drop2(self.ff(x)))
        return x, kv


class TransformerLM(nn.Module):
    """Causal LM: ``forward(tokens [B, T]) -> logits [B, T, V]`` (position t predicts token t+1)."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # Positional encodings for the positions used so far (positions() extends them up to max_len): a
        # table of max_len rows would outweigh a small quantized model. A plain attribute, not a buffer, so
        # that data-parallel training never broadcasts tables that grew differently on different ranks.
        self._pe = sinusoidal_positions(min(cfg.max_len, 128), cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.final_norm else None
        self.out = nn.Linear(cfg.d_model, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.out.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)
        if not self.cfg.tie_embeddings:
            nn.init.uniform_(self.out.weight, -0.1, 0.1)

    def forward(self, tokens, past=None, attn_mask=None, return_past: bool = False, targets=None, teacher=None):
        """``tokens`` [B, T] int64. ``past``: the list of per-layer (k, v) that a previous call returned
        with ``return_past=True``; the new tokens continue those sequences. ``attn_mask`` (bool
        [T, past+T] or broadcastable to [B, H, T, past+T], True = may attend) overrides the causal mask; an
        object with ``attend(q, k, v) -> [B, H, T, d_head]`` computes the attention instead (no ``past``).
        ``targets`` [B, T] (``-100`` at padding): the summed cross entropy instead of the logits, computed
        without ever holding them all (:mod:`asr_lm_quant.lm.output_loss`); with ``teacher`` (see
        :func:`output_loss`), ``(summed distillation loss, summed cross entropy)``."""
        x, new_past = self._trunk(tokens, past, attn_mask)
        if targets is not None:
            return output_loss(self.out, x, targets, teacher)
        logits = self.out(x)
        return (logits, new_past) if return_past else logits

    def hidden_states(self, tokens, attn_mask=None) -> torch.Tensor:
        """The final hidden states [B, T, d_model], the output layer's input (see :func:`target_logits`)."""
        return self._trunk(tokens, None, attn_mask)[0]

    def _trunk(self, tokens, past, attn_mask):
        B, T = tokens.shape
        start = 0 if past is None else past[0][0].shape[2]
        if start + T > self.cfg.max_len:
            raise ValueError(f"sequence of {start + T} tokens exceeds max_len {self.cfg.max_len}")
        x = self.embed(tokens)
        if self.cfg.scale_embedding:
            x = x * math.sqrt(self.cfg.d_model)
        x = self.drop(x + self.positions(start + T, x.device)[start:start + T].to(x.dtype))
        new_past = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, None if past is None else past[i], attn_mask)
            new_past.append(kv)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x, new_past

    def positions(self, end: int, device=None) -> torch.Tensor:
        """The sinusoidal encodings of positions ``0 .. end-1`` ([end, d_model], on ``device``); each row is
        the same whatever the length of the table, so growing it changes no value."""
        if end > self._pe.shape[0]:
            if end > self.cfg.max_len:
                raise ValueError(f"position {end - 1} is beyond max_len {self.cfg.max_len}")
            n = min(self.cfg.max_len, max(end, 2 * self._pe.shape[0]))
            self._pe = sinusoidal_positions(n, self.cfg.d_model)
        if device is not None and self._pe.device != torch.device(device):
            self._pe = self._pe.to(device)
        return self._pe[:end]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once


def output_rows(out: nn.Module, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of an output layer's weight (float32), whether a ``nn.Linear`` or a packed layer (which
    decodes just those rows from its codes)."""
    if hasattr(out, "gather_rows"):
        return out.gather_rows(index)
    return out.weight[index].float()


def target_logits(out: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The logit of each target only, ``hidden[i] . W[targets[i]] + b[targets[i]]`` in float32: one dot
    product per position instead of the vocabulary-wide product (``hidden`` [N, d], ``targets`` [N])."""
    logit = torch.einsum("nd,nd->n", hidden.float(), output_rows(out, targets))
    if out.bias is not None:
        logit = logit + out.bias[targets].float()
    return logit


def output_loss(out: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, teacher=None):
    """Summed cross entropy of the output layer ``out`` on ``hidden`` [..., d] against ``targets`` [...]
    (``-100`` at padding), fused and chunked. ``teacher``: ``(teacher model's hidden states, its output
    layer, d)``: then ``(summed (1 - d) CE + d KL(teacher || model), summed CE)`` (see
    :func:`asr_lm_quant.lm.output_loss.linear_distill_loss`)."""
    from asr_lm_quant.lm.output_loss import linear_distill_loss

    if isinstance(out, nn.Linear):
        weight = out.weight
    elif hasattr(out, "matrix") and teacher is None:
        weight = out.matrix.dense()  # a packed layer: decoded for this call only, as its forward does
    elif teacher is None:
        logits = out(hidden)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-100, reduction="sum")
    else:
        raise TypeError(f"distillation needs a trainable output layer, not {type(out).__name__}")
    soft = None if teacher is None else (teacher[0], teacher[1].weight, teacher[1].bias, teacher[2])
    loss, ce = linear_distill_loss(hidden, weight, out.bias, targets, soft)
    return loss if teacher is None else (loss, ce)


def final_hidden(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The output layer's input for ``tokens``, of a Transformer or an LSTM LM."""
    return model.hidden_states(tokens) if hasattr(model, "hidden_states") else model.hidden(tokens)[0]
