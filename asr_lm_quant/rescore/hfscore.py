"""Costs from a causal LM in a local Hugging Face ``transformers`` checkpoint directory (GPT-2 style).

A hypothesis ``w1 .. wn`` is the text ``"w1 w2 .. wn"`` (words joined by single spaces), tokenised with the
checkpoint's own tokenizer *without* its special tokens; the model sees ``[start] t1 .. tm`` and the cost is

    -sum_j log p(t_j | start t1 .. t_{j-1}) - log p(end | start t1 .. tm)

in nats, the units of the word-level NN costs. ``start`` is the tokenizer's BOS token, else its EOS token
(GPT-2 has one token, ``<|endoftext|>``, for both, and its tokenizer adds none by itself: we always add it,
whatever the tokenizer's own settings). ``end`` is the EOS token: the sentence end is scored as predicting
it, as the word-level models predict ``<s>``; a tokenizer without an EOS token gives no end term. Models
trained on running text (GPT-2) see ``<|endoftext|>`` only between documents, so the end term is a weak
signal there; it is kept so that every kind of model is compared on the same event.

Per word, the costs of its subword tokens are added: a token belongs to the word its last non-space
character lies in (a token of spaces only, to the word that follows). Weights are read from safetensors
only (``use_safetensors=True``); no remote code is run and nothing is downloaded.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.rescore.scorer import ScoreStats
from asr_lm_quant.textio import split_fields


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_hf_causal_lm(model_dir, device="cpu"):
    """``(model, tokenizer)`` from a local checkpoint directory (eval mode), or an InputError naming it."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(model_dir, "Hugging Face checkpoint directory does not exist")
    if not (model_dir / "config.json").exists():
        raise InputError(model_dir, "no config.json: not a Hugging Face checkpoint directory")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise InputError(model_dir, "scoring with a Hugging Face checkpoint needs the 'transformers' package "
                                    "(pip install transformers)") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except Exception as e:  # transformers raises many types for missing or foreign tokenizer files
        raise InputError(model_dir, f"cannot load its tokenizer: {_first_line(e)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(model_dir, "the tokenizer is not a fast (tokenizer.json) one, which word offsets need")
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
    except Exception as e:
        raise InputError(model_dir, f"cannot load a causal LM from it (weights must be safetensors): "
                                    f"{_first_line(e)}") from None
    return model.to(device).eval(), tokenizer


class HFScorer:
    """Word-sequence costs from a Hugging Face causal LM (see the module notes for the units).

    ``token_budget``: most model positions (padding included) in one forward batch; the logits of a batch
    ([positions, vocabulary] float32) are its memory peak."""

    vocab = None  # subword models have no word vocabulary (and no OOVs)

    def __init__(self, model_dir, *, device: str = "cpu", token_budget: int = 1024, bf16: bool = False,
                 progress: bool = False):
        if token_budget < 1:
            raise ValueError("token_budget must be >= 1")
        self.device = torch.device(device)
        self.model, self.tokenizer = load_hf_causal_lm(model_dir, self.device)
        tok = self.tokenizer
        self.start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if self.start is None:
            raise InputError(model_dir, "the tokenizer has neither a BOS nor an EOS token to start a sentence with")
        self.end = tok.eos_token_id
        cfg = self.model.config
        self.max_len = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self.token_budget = int(token_budget)
        self.bf16 = bf16
        self.progress = progress
        self.stats = ScoreStats()

    def tokenize(self, hyps) -> tuple[list[list[int]], list[np.ndarray]]:
        """Per hypothesis its token ids and, per token, the index of the word it belongs to."""
        words = [split_fields(h) if isinstance(h, str) else list(h) for h in hyps]
        texts = [" ".join(w) for w in words]
        if not texts:
            return [], []
        enc = self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        owners = []
        for text, ws, offsets in zip(texts, words, enc["offset_mapping"]):
            starts = np.cumsum([0] + [len(w) + 1 for w in ws[:-1]]).tolist() if ws else []
            own = np.zeros(len(offsets), np.int64)
            for k, (s, e) in enumerate(offsets):
                j = e - 1
                while j >= s and text[j] == " ":  # the separator the words were joined with
                    j -= 1
                own[k] = bisect.bisect_right(starts, s) if j < s else bisect.bisect_right(starts, j) - 1
            owners.append(np.clip(own, 0, max(len(ws) - 1, 0)))
        return [list(ids) for ids in enc["input_ids"]], owners

    def costs(self, hyps) -> np.ndarray:
        """float64 cost per hypothesis (each a list of words or a space-separated string)."""
        return np.array([c.sum() for c in self.word_costs(hyps)], dtype=np.float64)

    def word_costs(self, hyps) -> list[np.ndarray]:
        """Per hypothesis, the cost of each word (its tokens' costs added) and, last, of the end of sentence."""
        t0 = time.perf_counter()
        hyps = list(hyps)
        ids, owners = self.tokenize(hyps)
        n_words = [len(split_fields(h) if isinstance(h, str) else h) for h in hyps]
        stats = ScoreStats(hypotheses=len(hyps), words=sum(n_words))
        token_costs = self._token_costs(ids, stats)
        out = []
        for n, own, tc in zip(n_words, owners, token_costs):
            per = np.zeros(n + 1, dtype=np.float64)
            np.add.at(per, own, tc[:len(own)])
            per[n] = tc[len(own)] if len(tc) > len(own) else 0.0
            out.append(per)
        stats.seconds = time.perf_counter() - t0
        self.stats = stats
        return out

    @torch.inference_mode()
    def _token_costs(self, ids: list[list[int]], stats: ScoreStats) -> list[np.ndarray]:
        """Per hypothesis the cost of each token and, if there is an EOS token, of the end (float64)."""
        seqs = [[self.start] + t for t in ids]
        if self.max_len:
            for n, s in enumerate(seqs):
                if len(s) > self.max_len:
                    raise InputError(None, f"hypothesis {n + 1}: {len(s)} tokens exceed the model's context "
                                           f"of {self.max_len}")
        out: list = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        autocast = (torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        batches, batch = [], []
        for i in order:  # ascending length: the last of a batch is its longest
            if batch and (len(batch) + 1) * len(seqs[i]) > self.token_budget:
                batches.append(batch)
                batch = []
            batch.append(i)
        if batch:
            batches.append(batch)
        for batch in progress_bar(batches, unit="batch", desc="HF LM", enabled=self.progress):
            L = len(seqs[batch[-1]])
            inp = torch.full((len(batch), L), self.start, dtype=torch.long)
            mask = torch.zeros((len(batch), L), dtype=torch.long)
            for b, i in enumerate(batch):
                inp[b, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[b, :len(seqs[i])] = 1
            with autocast:
                logits = self.model(input_ids=inp.to(self.device), attention_mask=mask.to(self.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for b, i in enumerate(batch):
                targets = seqs[i][1:] + ([self.end] if self.end is not None else [])
                rows = torch.arange(len(targets), device=logp.device)
                out[i] = -logp[b, rows, torch.tensor(targets, device=logp.device)].double().cpu().numpy()
            stats.batches += 1
            stats.positions += int(mask.sum())
            stats.padded_positions += inp.numel()
            stats.max_batch_positions = max(stats.max_batch_positions, inp.numel())
        return out
