"""Back-off n-gram LMs: training ARPA files (kaldingram), perplexity and sentence costs (kenlm).

Public surface: :class:`ArpaLM` (costs in negated natural log) and :func:`train_arpa`.
"""

from asr_lm_quant.ngram.arpa import ArpaLM
from asr_lm_quant.ngram.train import train_arpa

__all__ = ["ArpaLM", "train_arpa"]
