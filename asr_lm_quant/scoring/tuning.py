"""The one rule by which every tuner here picks its setting: the first candidate, in the tuner's own order, with
the lowest error. ``decide-nbest`` (errors over a weight x LM scale x penalty grid), the Kaldi-style scoring
sweep (WER as printed, penalties outer and LM weights inner, as ``best_wer`` reads them) and the mini recipe's
dev/eval tuning (dev WER per interpolation weight) differ only in their candidates, their order and what they
count."""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def first_lowest(candidates: Iterable[T], error: Callable[[T], float]) -> T:
    """The first of ``candidates`` whose ``error`` no later one beats. Comparisons with NaN are false, as in
    the Perl numeric compare of Kaldi's ``best_wer``: a NaN never replaces a candidate, nor is it replaced."""
    best, best_error = None, None
    for c in candidates:
        e = error(c)
        if best_error is None or best_error > e:
            best, best_error = c, e
    if best_error is None:
        raise ValueError("no candidates to choose from")
    return best
