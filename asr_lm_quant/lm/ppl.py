"""Perplexity of an LM on a text file, with and without end-of-sentence."""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan, encode_file, sequences
from asr_lm_quant.lm.loop import autocast


@torch.no_grad()
def perplexity(model, vocab, text_path, *, device="cpu", tokens_per_batch: int = 8192, bf16: bool = False,
               progress: bool = True) -> dict:
    """Score every sentence of ``text_path`` as ``<s> w1 .. wn <s>``.

    ``ppl`` counts each word (OOVs as ``<unk>``) and each end-of-sentence; ``ppl_no_eos`` the words
    only. Sentences longer than the model's ``max_len`` are scored in windows.
    """
    enc = encode_file(text_path, vocab)
    plan = BatchPlan(sequences(enc, vocab.bos, model.cfg.max_len - 1), tokens_per_batch, shuffle=False)
    model.eval()
    total = total_eos = 0.0
    n_tok = n_eos = 0
    for _, batch in tqdm(plan.iterate(0), total=len(plan), disable=not progress, desc="ppl", unit="batch"):
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)
        with autocast(device, bf16):
            logits = model(inputs)
        logp = torch.log_softmax(logits.float(), dim=-1)
        mask = targets != PAD_TARGET
        cost = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        eos = mask & (targets == vocab.eos)
        total += float(cost[mask].double().sum())
        total_eos += float(cost[eos].double().sum())
        n_tok += int(mask.sum())
        n_eos += int(eos.sum())
    words = n_tok - n_eos
    return {
        "ppl": math.exp(total / n_tok),
        "ppl_no_eos": math.exp((total - total_eos) / words) if words else float("nan"),
        "cost": total,
        "oov": enc.oov,
        "words": enc.words,
        "sentences": len(enc.sentences),
        "tokens_scored": n_tok,
    }
