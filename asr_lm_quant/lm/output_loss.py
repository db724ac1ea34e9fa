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
    return linear_distill_loss(h, weight, bias, targets, None, ignore_index, chunk_rows)[0]


def linear_distill_loss(h, weight, bias, targets, teacher=None, ignore_index: int = -100,
                        chunk_rows: int = CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(summed loss, summed cross entropy)`` over the real target positions. ``teacher``: ``(hidden,
    weight, bias, d)`` of a teacher model (its final hidden states for the same positions, its output
    layer) and the distillation weight: the loss of a position is then ``(1 - d) CE + d KL(teacher ||
    model)``, i.e. the cross entropy against ``(1 - d) onehot + d p_teacher`` less ``d`` times the teacher's
    entropy (a constant); without one it is the cross entropy. Only the loss has a gradient."""
    h2 = h.reshape(-1, h.shape[-1])
    t = targets.reshape(-1)
    keep = t != ignore_index
    th = None if teacher is None else teacher[0].reshape(-1, teacher[0].shape[-1])
    if not bool(keep.all()):
        h2, t = h2[keep], t[keep]
        th = None if th is None else th[keep]
    dtype = torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type) else torch.float32
    zeros = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device)
    bias = zeros if bias is None else bias
    soft = None
    if teacher is not None:
        tw, tb, d = teacher[1], teacher[2], float(teacher[3])
        soft = (th.detach().to(dtype), tw.detach().to(dtype), (zeros if tb is None else tb.detach()).float(), d)
    with torch.autocast(h.device.type, enabled=False):
        if torch.is_grad_enabled() and (h2.requires_grad or weight.requires_grad or bias.requires_grad):
            return _LinearCrossEntropy.apply(h2, weight, bias, t, soft, dtype, int(chunk_rows))
        with torch.no_grad():
            return _chunks(h2, weight, bias, t, soft, dtype, int(chunk_rows), grads=False)[:2]


def _logits(hc, wc, bias, s, e):
    """float32 logits of rows s:e (the product in the operands' dtype)."""
    if wc.dtype == torch.float32:
        return torch.addmm(bias, hc[s:e], wc.t())
    return torch.mm(hc[s:e], wc.t()).float().add_(bias)


def _chunks(h, weight, bias, t, soft, dtype, chunk, grads: bool):
    """The loss, the cross entropy and (``grads``) the gradients of the loss for h, weight and bias."""
    hc, wc, b = h.detach().to(dtype), weight.detach().to(dtype), bias.detach().float()
    dev = h.device
    if grads:
        grad_h = torch.empty(h.shape, dtype=torch.float32, device=dev)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=dev)
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=dev)
    loss = torch.zeros((), dtype=torch.float64, device=dev)
    ce = torch.zeros((), dtype=torch.float64, device=dev)
    for s in range(0, len(t), chunk):
        e = min(len(t), s + chunk)
        rows = torch.arange(e - s, device=dev)
        logits = _logits(hc, wc, b, s, e)
        target = logits[rows, t[s:e]]
        if soft is not None:
            th, tw, tb, d = soft
            tl = _logits(th, tw, tb, s, e)
            p = tl.sub_(tl.logsumexp(-1, keepdim=True)).exp_()  # the teacher's probabilities, in place
            cross = (p * logits).sum(-1)  # sum_v p_v logit_v
            neg_entropy = torch.xlogy(p, p).sum(-1)  # sum_v p_v log p_v
        # One exp pass serves the log normaliser and the softmax (the gradient): the logits become exp(l - max).
        top = logits.amax(-1, keepdim=True)
        ex = logits.sub_(top).exp_()
        sums = ex.sum(-1)
        lse = top.squeeze(1) + sums.log()
        ce_rows = lse - target
        ce += ce_rows.sum(dtype=torch.float64)
        if soft is None:
            loss += ce_rows.sum(dtype=torch.float64)
        else:
            # (1 - d) CE + d KL(p || q), with KL = sum p log p - sum p (logit - lse)
            loss += ((1 - d) * ce_rows + d * (lse - cross + neg_entropy)).sum(dtype=torch.float64)
        if not grads:
            continue
        g = ex.div_(sums[:, None])  # softmax, in place: the gradient is softmax - target
        if soft is None:
            g[rows, t[s:e]] -= 1.0
        else:
            g.sub_(p, alpha=d)
            g[rows, t[s:e]] -= 1.0 - d
        grad_b += g.sum(0)
        gc = g.to(dtype)
        grad_h[s:e] = torch.mm(gc, wc).float()
        if dtype == torch.float32:
            grad_w.addmm_(gc.t(), hc[s:e])
        else:
            grad_w += torch.mm(gc.t(), hc[s:e]).float()
    out = (loss.float(), ce.float())
    return out + ((grad_h, grad_w, grad_b) if grads else ())


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, t, soft, dtype, chunk):
        loss, ce, grad_h, grad_w, grad_b = _chunks(h, weight, bias, t, soft, dtype, chunk, grads=True)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (h.dtype, weight.dtype, bias.dtype)
        ctx.mark_non_differentiable(ce)
        return loss, ce

    @staticmethod
    def backward(ctx, grad, _grad_ce):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        dh, dw, db = ctx.dtypes
        return (grad_h.mul(grad).to(dh) if ctx.needs_input_grad[0] else None,
                grad_w.mul(grad).to(dw) if ctx.needs_input_grad[1] else None,
                grad_b.mul(grad).to(db) if ctx.needs_input_grad[2] else None, None, None, None, None)
