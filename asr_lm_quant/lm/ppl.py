"""Perplexity of an LM on a text file, with and without end-of-sentence."""

from __future__ import annotations

import math

import torch

from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan, encode_file, sequences
from asr_lm_quant.lm.loop import autocast
from asr_lm_quant.lm.model import target_logits
from asr_lm_quant.progress import bar as progress_bar


@torch.no_grad()
def perplexity(model, vocab, text_path, *, device="cpu", tokens_per_batch: int = 8192, bf16: bool = False,
               progress: bool = True, self_normalized: bool = False) -> dict:
    """Score every sentence of ``text_path`` as ``<s> w1 .. wn <s>``.

    ``ppl`` counts each word (OOVs as ``<unk>``) and each end-of-sentence; ``ppl_no_eos`` the words
    only. Sentences longer than the model's ``max_len`` are scored in windows. ``log_z_mean`` and
    ``log_z_mean_abs``: the log normaliser over the scored positions (0 for a model whose probabilities
    already sum to 1).

    ``self_normalized``: each cost is ``-logit[target]``, the normaliser skipped (only the target rows of the
    output matrix are used); the result's ``ppl`` is then that of the unnormalised scores, and no log-Z
    figures are given (they need the normaliser).
    """
    enc = encode_file(text_path, vocab)
    plan = BatchPlan(sequences(enc, vocab.bos, model.cfg.max_len - 1), tokens_per_batch, shuffle=False)
    model.eval()
    total = total_eos = 0.0
    log_z_sum = log_z_abs = 0.0
    n_tok = n_eos = 0
    for _, batch in progress_bar(plan.iterate(0), total=len(plan), enabled=progress, desc="ppl", unit="batch"):
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)
        mask = targets != PAD_TARGET
        eos = mask & (targets == vocab.eos)
        if self_normalized:
            with autocast(device, bf16):
                hidden = model.hidden_states(inputs)
            cost = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
            cost[mask] = -target_logits(model.out, hidden[mask], targets[mask])
        else:
            with autocast(device, bf16):
                logits = model(inputs)
            logits = logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            index = targets.clamp(min=0).unsqueeze(-1)
            cost = -logp.gather(-1, index).squeeze(-1)
            log_z = (logits.gather(-1, index).squeeze(-1) + cost)[mask].double()  # logit - log p = log Z
            log_z_sum += float(log_z.sum())
            log_z_abs += float(log_z.abs().sum())
        total += float(cost[mask].double().sum())
        total_eos += float(cost[eos].double().sum())
        n_tok += int(mask.sum())
        n_eos += int(eos.sum())
    words = n_tok - n_eos
    out = {
        "ppl": math.exp(total / n_tok),
        "ppl_no_eos": math.exp((total - total_eos) / words) if words else float("nan"),
        "cost": total,
        "oov": enc.oov,
        "words": enc.words,
        "sentences": len(enc.sentences),
        "tokens_scored": n_tok,
        "self_normalized": self_normalized,
    }
    if not self_normalized:
        out.update(log_z_mean=log_z_sum / n_tok, log_z_mean_abs=log_z_abs / n_tok)
    return out
