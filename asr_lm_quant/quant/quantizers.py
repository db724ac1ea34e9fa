"""Weight quantizers: binary (1 bit) and symmetric uniform b-bit tables, with least-squares scales.

A b-bit table (b >= 2) is ``{alpha * k : k = -(2^(b-1) - 1) .. 2^(b-1) - 1}`` (b = 2 is ternary); b = 1 is
``alpha * sign(W)`` with sign(0) = +1. ``alpha`` is one scale per group, or one per row (``per_row``).
``bits = 32`` means "kept in 32-bit float" so a plan can leave a group unquantized.

The scale minimises ``||W - alpha * C||^2``: a coarse grid of candidate scales picks a starting point (the
alternation alone finds poor local optima for wide tables), then the closed form ``alpha = <W, C> / <C, C>``
alternates with re-rounding until the error stops falling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLOAT_BITS = 32
MAX_BITS = 16  # integer tables up to 16 bits; 32 is the float "no quantization" marker


def check_bits(bits: int) -> int:
    if bits != FLOAT_BITS and not 1 <= int(bits) <= MAX_BITS:
        raise ValueError(f"bits must be 1..{MAX_BITS} or {FLOAT_BITS} (float), not {bits}")
    return int(bits)


def kmax(bits: int) -> int:
    """Largest code magnitude: 1 for binary and ternary, 2^(b-1) - 1 otherwise."""
    return 1 if bits == 1 else 2 ** (bits - 1) - 1


def _as_rows(w: torch.Tensor, per_row: bool) -> torch.Tensor:
    return w.reshape(w.shape[0], -1) if per_row else w.reshape(1, -1)


def round_codes(w2: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes (as float tensor) of rows ``w2`` [R, C] for scales ``alpha`` [R, 1]."""
    if bits == 1:
        return torch.where(w2 >= 0, 1.0, -1.0).to(w2.dtype)
    safe = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    k = kmax(bits)
    c = torch.round(w2 / safe).clamp_(-k, k)
    return torch.where(alpha > 0, c, torch.zeros_like(c))


def _sq_error(w2, alpha, bits):
    c = round_codes(w2, alpha, bits)
    return ((w2 - alpha * c) ** 2).sum(dim=1, keepdim=True), c


def fit_scale(w: torch.Tensor, bits: int, per_row: bool = False, init: torch.Tensor | None = None,
              max_iter: int = 50, grid: int = 12) -> torch.Tensor:
    """Least-squares scale(s) for ``w`` at ``bits``: shape [R, 1] (R = rows if per_row else 1), float32.

    ``init`` (a previous scale) skips the grid search: training loops refit cheaply from it each step.
    """
    bits = check_bits(bits)
    if bits == FLOAT_BITS:
        raise ValueError("a 32-bit (float) group has no scale")
    with torch.no_grad():
        w2 = _as_rows(w.detach(), per_row).float()
        absmax = w2.abs().amax(dim=1, keepdim=True)
        if bits == 1:  # closed form: mean |W| is the exact optimum for sign codes
            return w2.abs().mean(dim=1, keepdim=True)
        if init is not None:
            alpha = init.detach().float().reshape(-1, 1).expand(w2.shape[0], 1).clone()
            best, c = _sq_error(w2, alpha, bits)
        else:
            # grid of scales from absmax / kmax / 60 up to absmax / kmax (no clipping at the top end)
            top = absmax / kmax(bits)
            alpha = best = c = None
            for f in torch.logspace(-1.8, 0, grid).tolist():
                a = top * f
                e, ca = _sq_error(w2, a, bits)
                if alpha is None:
                    alpha, best, c = a.clone(), e, ca
                else:
                    better = e < best
                    alpha = torch.where(better, a, alpha)
                    best = torch.where(better, e, best)
                    c = torch.where(better, ca, c)
        for _ in range(max_iter):
            cc = (c * c).sum(dim=1, keepdim=True)
            new = torch.where(cc > 0, (w2 * c).sum(dim=1, keepdim=True) / cc.clamp_min(1e-30), alpha)
            e, cn = _sq_error(w2, new, bits)
            improved = e <= best  # the closed form never raises the error for fixed codes
            moved = (cn != c).any(dim=1, keepdim=True)
            alpha = torch.where(improved, new, alpha)
            best = torch.where(improved, e, best)
            c = torch.where(improved, cn, c)
            if not bool((improved & moved).any()):  # a fixed point: codes = round(w / alpha), alpha closed form
                break
        return alpha


def quantize_codes(w: torch.Tensor, bits: int, alpha: torch.Tensor, per_row: bool = False) -> torch.Tensor:
    """Integer codes of ``w`` (int32 tensor of ``w``'s shape) for the given scales."""
    w2 = _as_rows(w.detach(), per_row).float()
    return round_codes(w2, alpha.float().reshape(-1, 1), bits).to(torch.int32).reshape(w.shape)


def dequantize(codes: torch.Tensor, alpha: torch.Tensor, per_row: bool = False) -> torch.Tensor:
    """``alpha * codes`` in float32. The one place this product is formed, so that weights quantized in
    memory and weights loaded from a packed file are bit-identical."""
    c2 = _as_rows(codes, per_row).to(torch.float32)
    return (c2 * alpha.to(torch.float32).reshape(-1, 1)).reshape(codes.shape)


@dataclass
class Quantized:
    codes: torch.Tensor   # int32, shape of the weight
    scale: torch.Tensor   # float32 [R, 1]
    bits: int
    per_row: bool

    def weight(self) -> torch.Tensor:
        return dequantize(self.codes, self.scale, self.per_row)


def quantize(w: torch.Tensor, bits: int, per_row: bool = False, init: torch.Tensor | None = None,
             max_iter: int = 50) -> Quantized:
    """Fit the scale(s) and round ``w`` onto its table."""
    alpha = fit_scale(w, bits, per_row, init=init, max_iter=max_iter)
    return Quantized(quantize_codes(w, bits, alpha, per_row), alpha, bits, per_row)


def project(w: torch.Tensor, bits: int, per_row: bool = False, init=None, max_iter: int = 50):
    """The nearest point of the quantization set (scale re-fitted): ``(Q(w) float32, scale)``."""
    if bits == FLOAT_BITS:
        return w.detach().float().clone(), None
    q = quantize(w, bits, per_row, init=init, max_iter=max_iter)
    return q.weight(), q.scale


def fake_quant(w: torch.Tensor, bits: int, per_row: bool = False, init=None, max_iter: int = 3):
    """Straight-through quantization: forward value Q(w), gradient of the identity. Returns (tensor, scale)."""
    if bits == FLOAT_BITS:
        return w, None
    q, alpha = project(w, bits, per_row, init=init, max_iter=max_iter)
    return w + (q.to(w.dtype) - w).detach(), alpha


def quant_error(w: torch.Tensor, bits: int, per_row: bool = False) -> float:
    """``||Q_b(w) - w||^2`` with the fitted scale (0 for float groups)."""
    if bits == FLOAT_BITS:
        return 0.0
    q, _ = project(w, bits, per_row)
    return float(((q - w.detach().float()) ** 2).sum())
