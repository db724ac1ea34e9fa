"""The output layer and the cross entropy in one pass, a chunk of positions at a time.

Training an LM the plain way materialises ``[positions, vocabulary]`` logits, then their log-softmax, then the
gradient of both: for 4,096 positions and 10k words, three float32 tensors of 164 MB that are read and written
several times (on a 2-core CPU the log-softmax and its backward took a fifth of a training step). Here the
logits of a few hundred positions at a time are made, turned in place into the gradient ``softmax - onehot``
and multiplied straight back into the gradients of the hidden states, the weight and the bias, while the chunk
is still in cache. The backward then only scales those gradients by the incoming one (the loss is a scalar).
The products are the same three as autograd's; padding positions are dropped before any of them.

The sum of the cross entropies equals ``F.cross_entropy(..., reduction="sum")`` up to float summation order.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 256  # positions per chunk: their logits (~10 MB for 10k words) stay close to the cores


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                         ignore_index: int = -100, chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Summed cross entropy (nats) of ``h @ weight.T + bias`` [..., V] against ``targets`` [...] (positions
    whose target is ``ignore_index`` left out). Under CPU/CUDA autocast the products run in its dtype; the
    softmax and every accumulation stay float32."""
    h2 = h.reshape(-1, h.shape[-1])
    t = targets.reshape(-1)
    keep = t != ignore_index
    if not bool(keep.all()):
        h2, t = h2[keep], t[keep]
    dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else torch.float32
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
    with torch.autocast(h.device.type, enabled=False):
        if torch.is_grad_enabled() and (h2.requires_grad or weight.requires_grad or bias.requires_grad):
            return _LinearCrossEntropy.apply(h2, weight, bias, t, dtype, int(chunk_rows))
        return _loss_only(h2, weight, bias, t, dtype, int(chunk_rows))


def _chunk_logits(hc, wc, bias, s, e):
    return torch.addmm(bias, hc[s:e].float(), wc.t().float()) if wc.dtype == torch.float32 else \
        torch.mm(hc[s:e], wc.t()).float().add_(bias)


def _loss_only(h, weight, bias, t, dtype, chunk):
    hc, wc, b = h.detach().to(dtype), weight.detach().to(dtype), bias.detach().float()
    total = torch.zeros((), dtype=torch.float64, device=h.device)
    for s in range(0, len(t), chunk):
        e = min(len(t), s + chunk)
        logits = _chunk_logits(hc, wc, b, s, e)
        total += (logits.logsumexp(-1) - logits.gather(1, t[s:e, None]).squeeze(1)).sum(dtype=torch.float64)
    return total.float()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, t, dtype, chunk):
        hc, wc, b = h.to(dtype), weight.to(dtype), bias.float()
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=h.device)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=h.device)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for s in range(0, len(t), chunk):
            e = min(len(t), s + chunk)
            logits = _chunk_logits(hc, wc, b, s, e)
            lse = logits.logsumexp(-1)
            rows = torch.arange(e - s, device=h.device)
            total += (lse - logits[rows, t[s:e]]).sum(dtype=torch.float64)
            g = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            g[rows, t[s:e]] -= 1.0
            grad_b += g.sum(0)
            gc = g.to(dtype)
            grad_h[s:e] = torch.mm(gc, wc).float()
            if dtype == torch.float32:
                grad_w.addmm_(gc.t(), hc[s:e])
            else:
                grad_w += torch.mm(gc.t(), hc[s:e]).float()
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (h.dtype, weight.dtype, bias.dtype)
        return total.float()

    @staticmethod
    def backward(ctx, grad):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        dh, dw, db = ctx.dtypes
        return (grad_h.mul(grad).to(dh) if ctx.needs_input_grad[0] else None,
                grad_w.mul(grad).to(dw) if ctx.needs_input_grad[1] else None,
                grad_b.mul(grad).to(db) if ctx.needs_input_grad[2] else None, None, None, None)
