"""What every word-level LM scorer shares: hypotheses (word lists or strings) in, float64 costs out, and a
record of the work the last call did. The scorers themselves: ``nnscore`` (Transformer), ``rnnscore``
(LSTM), ``hfscore`` (Hugging Face causal LMs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_lm_quant.text.vocab import Vocabulary
from asr_lm_quant.textio import split_fields


@dataclass
class ScoreStats:
    """What the last ``costs`` or ``word_costs`` call of a scorer did."""
    hypotheses: int = 0
    words: int = 0            # words scored (end-of-sentence not included)
    oov: int = 0              # words scored as <unk>
    positions: int = 0        # model positions computed (trie nodes, no padding)
    padded_positions: int = 0  # positions including padding
    batches: int = 0
    max_batch_positions: int = 0
    attention_scores: int = 0  # query-key pairs the attention computed (per head and layer)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class WordScorer:
    """What every word-level scorer shares: hypotheses in, float64 costs out (subclasses provide
    ``costs_from_ids`` and set ``vocab`` and ``stats``)."""

    vocab: Vocabulary
    stats: ScoreStats

    def encode(self, words) -> list[int]:
        """``<s>`` followed by the word ids (OOVs as ``<unk>``)."""
        if isinstance(words, str):
            words = split_fields(words)
        return [self.vocab.bos] + self.vocab.encode(words)

    def costs(self, hyps) -> np.ndarray:
        """float64 cost per hypothesis (each a list of words or a space-separated string)."""
        import time
        t0 = time.perf_counter()
        seqs = [self.encode(h) for h in hyps]
        stats = ScoreStats(hypotheses=len(seqs), words=sum(len(s) - 1 for s in seqs),
                           oov=sum(1 for h in hyps for w in (split_fields(h) if isinstance(h, str) else h)
                                   if w not in self.vocab))
        out = self.costs_from_ids(seqs, stats)
        stats.seconds = time.perf_counter() - t0
        self.stats = stats
        return out

    def word_costs(self, hyps) -> list[np.ndarray]:
        """Per hypothesis, the cost of each word and, last, of the end of sentence (float64)."""
        import time
        t0 = time.perf_counter()
        seqs = [self.encode(h) for h in hyps]
        per = [np.zeros(len(s), dtype=np.float64) for s in seqs]
        stats = ScoreStats(hypotheses=len(seqs), words=sum(len(s) - 1 for s in seqs))
        self.costs_from_ids(seqs, stats, per_token=per)
        stats.seconds = time.perf_counter() - t0
        self.stats = stats
        return per

    def costs_from_ids(self, seqs, stats=None, per_token=None) -> np.ndarray:
        raise NotImplementedError

    def word_cost_floor(self) -> float:
        """A lower bound on the cost of any one word (or end of sentence): 0, as a log-probability is at most
        0 (n-best pruning builds on it)."""
        return 0.0
