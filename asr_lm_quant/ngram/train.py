"""Train Kneser-Ney back-off ARPA LMs with kaldingram (SRILM-compatible interpolation-free KN).

kaldingram computes one discount per order, ``D = n1 / (n1 + 2 n2)``, as SRILM's ``-ukndiscount``;
``discounts`` overrides them and ``min_counts`` drops rare n-grams (SRILM's ``-gtNmin``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.ngram.arpa import UNK
from asr_lm_quant.textio import check_readable_once, read_lines, split_fields

log = logging.getLogger(__name__)


def train_arpa(text_path, out_path, order: int = 3, *, vocab=None, min_counts=None, discounts=None,
               unk: str = UNK, overwrite: bool = True) -> dict:
    """Count ``text_path`` (one sentence per line) and write a KN ARPA LM to ``out_path`` atomically.

    ``vocab``: a :class:`~asr_lm_quant.text.vocab.Vocabulary` (or a set of words); words outside it become
    ``unk`` (``<unk>``, or a Kaldi lang dir's ``<UNK>``) before counting, so the n-gram LM and a neural LM
    share one vocabulary.
    ``min_counts``: per-order minimum counts, e.g. ``[0, 0, 2]`` (n-grams below are dropped).
    ``discounts``: per-order discount constants for orders 2..N (the 1-gram order is never discounted).
    Returns a summary dict (sentences, words, oov_mapped, ngram counts).
    """
    from kaldingram.train import NgramCounts  # heavy import, only when training

    text_path = Path(text_path)
    check_readable_once(text_path, "text file")
    if order < 2 or order > 5:
        raise ValueError(f"n-gram order must be 2..5, not {order}")
    if min_counts is not None and len(min_counts) != order:
        raise ValueError(f"min_counts needs {order} values (one per order), got {len(min_counts)}")
    if discounts is not None:
        if len(discounts) != order - 1:
            raise ValueError(f"discounts needs {order - 1} values (orders 2..{order}), got {len(discounts)}")
        if not all(0 < d < 1 for d in discounts):
            raise ValueError(f"discounts must lie in (0, 1): {discounts}")
    known = None
    if vocab is not None:
        known = (set(vocab.words) if hasattr(vocab, "words") else set(vocab)) | {unk}
    counts = NgramCounts(order)
    n_sent = n_words = n_oov = 0
    for _, line in read_lines(text_path):
        words = split_fields(line)
        if not words:
            continue
        if known is not None:
            mapped = [w if w in known else unk for w in words]
            n_oov += sum(a != b for a, b in zip(mapped, words))
            words = mapped
        counts.add_raw_counts_from_line(" ".join(words))
        n_sent += 1
        n_words += len(words)
    if n_sent == 0:
        raise InputError(text_path, "no sentences to train on (the file is empty)")
    if min_counts is not None and any(c > 0 for c in min_counts):
        counts.apply_count_cutoffs(list(min_counts))
    counts.cal_discounting_constants()
    if discounts is not None:
        counts.d = [0] + [float(d) for d in discounts]
    counts.cal_f()
    counts.cal_bow()
    with atomic_open(out_path, overwrite=overwrite) as f:
        counts.print_as_arpa(fout=f)
    ngrams = [sum(len(h.word_to_f) for h in counts.counts[k].values()) for k in range(order)]
    summary = {"order": order, "sentences": n_sent, "words": n_words, "oov_mapped_to_unk": n_oov,
               "discounts": [float(d) for d in counts.d[1:]], "ngrams": ngrams}
    log.info("wrote %s: %s", out_path, summary)
    return summary
