"""KL-divergence sensitivities: what quantizing ONE weight group at b bits does to the next-word distributions.

``KL_g(b) = (1/N) sum_t KL(P_fp(. | h_t) || P_{g,b}(. | h_t))`` over the N real target tokens of held-out
batches, where ``P_fp`` is the full-precision model and ``P_{g,b}`` the same model with only group ``g`` put
on its b-bit table (``quantizers.project``, scale fitted as everywhere else); every other weight stays float.
The bit allocation then minimises ``sum_g KL_g(b_g)`` under the size budget (``allocate.allocate_bits``),
i.e. it treats the damage of the groups as additive, as the Hessian method does with ``Omega_l(b)``.

How the work is laid out: ``Q_b(W_g)`` is fitted once per (group, bits) before any batch and kept as integer
codes (int8/int16) and scales, a quarter of the float size or less; then for each batch the full-precision
log-probabilities are computed once and every (group, bits) candidate swaps its group in, runs the forward
pass, adds up the KL against them and puts the float weights back (:class:`Reference`: one [tokens, vocabulary]
matrix per candidate). The forward passes run in float32 (never bf16) and the KL in float64: at 8 and 16 bits
it is around 1e-6..1e-10 nats per token, below what a float32 log-softmax resolves. Every pass runs the whole
model, also for groups of the top layers: the output layer and its normaliser dominate the cost of these
models, and they follow every group.
"""

from __future__ import annotations

import logging
import time

import torch

from asr_lm_quant.lm.data import PAD_TARGET
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.quant.plan import group_names, group_views
from asr_lm_quant.quant.quantizers import FLOAT_BITS, dequantize, quantize

log = logging.getLogger(__name__)


def _compact(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes in the narrowest dtype that holds them (dequantize casts them back to float32)."""
    return codes.to(torch.int8 if bits <= 8 else torch.int16)


class Reference:
    """The full-precision next-word distributions ``P`` of one batch, computed once for all candidates.

    With ``log Q_t = z_t - logsumexp(z_t)`` for a candidate's logits ``z``, the KL summed over tokens is
    ``sum_t KL(P_t || Q_t) = E(z_fp) - E(z)`` where ``E(z) = sum_t [P_t . z_t - S_t logsumexp(z_t)]`` and
    ``S_t = sum_v P_tv`` (1 up to rounding); ``E(z_fp) = sum P log P``. A candidate costs one [tokens, V]
    float64 matrix (its logits) and no log-softmax of its own, and logits equal to the reference give exactly
    0. Padding positions keep their rows with ``P_t = 0``, ``S_t = 0``: cheaper than selecting the real rows."""

    def __init__(self, logits: torch.Tensor, targets: torch.Tensor):
        real = (targets.reshape(-1) != PAD_TARGET).unsqueeze(1)
        z = logits.reshape(-1, logits.shape[-1]).double()
        self.p = z.log_softmax(-1).exp_().mul_(real)
        self.mass = self.p.sum(-1)
        self.tokens = int(real.sum())
        self.neg_entropy = self._expected_log_q(z)

    def _expected_log_q(self, z: torch.Tensor) -> float:
        cross = float(torch.dot(self.p.reshape(-1), z.reshape(-1)))
        return cross - float(torch.dot(self.mass, torch.logsumexp(z, -1)))

    def kl_sum(self, logits: torch.Tensor) -> float:
        """Summed over the batch's real tokens: ``sum_t KL(P_t || softmax(logits_t))`` in nats."""
        return self.neg_entropy - self._expected_log_q(logits.reshape(-1, logits.shape[-1]).double())


def take_batches(batches, max_tokens: int) -> list:
    """Held-out batches in order while their real tokens stay within ``max_tokens`` (at least one batch)."""
    out, total = [], 0
    for b in batches:
        if out and total + b.tokens > max_tokens:
            break
        out.append(b)
        total += b.tokens
    return out


@torch.no_grad()
def kl_sensitivities(model, batches: list, candidates, groups: list[str] | None = None,
                     per_row: bool = False) -> dict:
    """``KL_g(b)`` for every group (``plan.group_names``; default every matrix whole) and candidate precision.

    ``batches``: ``lm.data.Batch`` objects of held-out text. Returns ``{"kl": {group: {bits: nats per
    token}}, "tokens": N, "batches": k, "seconds": s}``. The model's weights are restored bit for bit."""
    if not batches:
        raise ValueError("no batches for the KL sensitivities")
    t0 = time.perf_counter()
    names = groups or group_names(model)
    cands = sorted({int(b) for b in candidates})
    views = group_views(model, names)
    was = model.training
    model.eval()
    # every candidate's weights, fitted once; a 32-bit candidate is the float model itself (KL 0)
    fitted = {}
    for n, p in views.items():
        for b in cands:
            if b != FLOAT_BITS:
                q = quantize(p, b, per_row)
                fitted[n, b] = (_compact(q.codes, b), q.scale)
    originals = {n: p.detach().clone() for n, p in views.items()}
    sums = {n: {b: 0.0 for b in cands} for n in names}
    tokens = 0
    bar = progress_bar(total=len(batches) * len(fitted), desc="kl sensitivities", unit="pass", mininterval=5.0,
                       dynamic_ncols=True)
    device = next(model.parameters()).device
    try:
        for batch in batches:
            inputs = batch.inputs.to(device)
            ref = Reference(model(inputs).float(), batch.targets.to(device))
            tokens += ref.tokens
            for (n, b), (codes, scale) in fitted.items():
                view = views[n]
                view.copy_(dequantize(codes, scale, per_row).to(view.dtype))
                try:
                    sums[n][b] += ref.kl_sum(model(inputs).float())
                finally:
                    view.copy_(originals[n])
                bar.update(1)
    finally:
        bar.close()
        model.train(was)
    seconds = time.perf_counter() - t0
    log.info("KL sensitivities of %d groups x %d precisions on %d tokens: %.1f s", len(names), len(cands),
             tokens, seconds)
    return {"kl": {n: {b: s / tokens for b, s in sums[n].items()} for n in names},
            "tokens": tokens, "batches": len(batches), "seconds": seconds}
