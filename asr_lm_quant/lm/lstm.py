"""A word-level LSTM language model (the architecture of Kaldi's pytorchnn ``RNNModel`` with ``LSTM``).

Embedding -> ``n_layers`` LSTM layers -> biased output layer (optionally tied to the embedding). The gate
matrices are plain ``nn.Linear`` modules (``layers.N.ih``: input to the four gates, ``layers.N.hh``: previous
output to the four gates, gate order input, forget, cell, output as in ``nn.LSTM``), not an ``nn.LSTM``, so
that quantization treats them as weight groups like any other Linear and a packed model keeps them packed.
The recurrence is a loop over time steps; each step is one matrix product per layer for the whole batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from asr_lm_quant.lm.model import config_from_dict

ARCH = "lstm"


@dataclass
class LSTMConfig:
    vocab_size: int
    d_embed: int = 256     # Kaldi's ninp
    d_hidden: int = 256    # Kaldi's nhid
    n_layers: int = 2
    dropout: float = 0.0
    tie_embeddings: bool = False
    arch: str = ARCH       # tells config.json readers which model class this is

    # An LSTM has no position limit; perplexity windows sentences at this length only to bound memory.
    max_len: ClassVar[int] = 1 << 20

    def __post_init__(self):
        if self.arch != ARCH:
            raise ValueError(f"arch must be {ARCH!r}, not {self.arch!r}")
        if min(self.vocab_size, self.d_embed, self.d_hidden, self.n_layers) < 1:
            raise ValueError("vocab_size, d_embed, d_hidden and n_layers must be positive")
        if self.tie_embeddings and self.d_embed != self.d_hidden:
            raise ValueError(f"tied embeddings need d_embed == d_hidden ({self.d_embed} != {self.d_hidden})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LSTMConfig":
        return config_from_dict(cls, d, "LSTM")


class LSTMLayer(nn.Module):
    def __init__(self, d_in: int, d_hidden: int):
        super().__init__()
        self.d_hidden = d_hidden
        self.ih = nn.Linear(d_in, 4 * d_hidden)
        self.hh = nn.Linear(d_hidden, 4 * d_hidden)

    def step(self, x_gates, h, c):
        """One time step from the input's gate pre-activations ``x_gates`` [B, 4H] and the state (h, c)."""
        i, f, g, o = (x_gates + self.hh(h)).float().chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x, state=None):
        """``x`` [B, T, d_in] -> outputs [B, T, H] and the last (h, c)."""
        B, T, _ = x.shape
        if state is None:
            h = c = torch.zeros(B, self.d_hidden, device=x.device)
        else:
            h, c = state
        gates = self.ih(x)  # the input part of every step at once
        outs = []
        for t in range(T):
            h, c = self.step(gates[:, t], h, c)
            outs.append(h)
        return torch.stack(outs, dim=1), (h, c)


class LSTMLM(nn.Module):
    """Causal LM: ``forward(tokens [B, T]) -> logits [B, T, V]`` (position t predicts token t+1).

    Padding after the end of a sequence changes none of its outputs (the recurrence runs forwards only)."""

    def __init__(self, cfg: LSTMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.drop = nn.Dropout(cfg.dropout)
        dims = [cfg.d_embed] + [cfg.d_hidden] * cfg.n_layers
        self.layers = nn.ModuleList(LSTMLayer(a, cfg.d_hidden) for a in dims[:-1])
        self.out = nn.Linear(cfg.d_hidden, cfg.vocab_size)
        if cfg.tie_embeddings:
            self.out.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)
        if not self.cfg.tie_embeddings:
            nn.init.uniform_(self.out.weight, -0.1, 0.1)

    def hidden(self, tokens, state=None):
        """The last layer's outputs [B, T, H] and the new state (a list of per-layer (h, c))."""
        x = self.drop(self.embed(tokens))
        new_state = []
        for i, layer in enumerate(self.layers):
            if i:
                x = self.drop(x)  # between layers, as nn.LSTM's dropout
            x, hc = layer(x, None if state is None else state[i])
            new_state.append(hc)
        return self.drop(x), new_state

    def forward(self, tokens, state=None, return_state: bool = False, targets=None, teacher=None):
        """Logits; with ``targets`` (``-100`` at padding) the summed cross entropy instead, and with
        ``teacher`` the distillation loss too (as :meth:`TransformerLM.forward`)."""
        x, new_state = self.hidden(tokens, state)
        if targets is not None:
            from asr_lm_quant.lm.model import output_loss
            return output_loss(self.out, x, targets, teacher)
        logits = self.out(x)
        return (logits, new_state) if return_state else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
