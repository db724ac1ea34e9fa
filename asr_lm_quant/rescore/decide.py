"""Decide and score n-best lists from any recogniser: the 1-best under tuned scales, and its WER.

Each hypothesis has an acoustic cost ``a``, an LM cost ``l`` (the recogniser's own graph/LM cost, or the
interpolated cost that ``rescore-nbest`` wrote) and ``n`` words; its total is

    cost = a + lm_scale * l + penalty * n

(costs are negated natural logs; a negative penalty is an insertion bonus). This is Kaldi's decision too:
Kaldi's LMWT is ``lm_scale`` and its word insertion penalty is ``penalty / lm_scale``. On a dev set, every
setting of the grid (``lm_scale`` x ``penalty``, and the interpolation weight when there is one n-best file
per weight) picks each utterance's cheapest hypothesis (ties go to the better rank); the setting with the
fewest word errors (ties: the first in grid order) is applied to the test set. WER is counted as Kaldi's
``compute-wer`` counts it, per subset when utterance-id prefixes say so.

Each hypothesis' errors are counted once; a setting's WER is then a sum over the hypotheses it picks, so a
sweep of hundreds of settings over tens of thousands of hypotheses takes seconds.
"""

from __future__ import annotations

import logging
from argparse import ArgumentTypeError
from dataclasses import dataclass

import numpy as np

from asr_lm_quant.cli_args import float_grid
from asr_lm_quant.errors import InputError
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.scoring.tuning import first_lowest
from asr_lm_quant.scoring.wer import utt_counts

log = logging.getLogger(__name__)

DEFAULT_LM_SCALES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 12.0, 15.0, 20.0)
DEFAULT_PENALTIES = (-1.0, -0.5, 0.0, 0.5, 1.0)


NORMALIZATIONS = ("none", "lower", "asr")


def format_weight(w: float) -> str:
    """An interpolation weight as it goes into file names: 0.0, 0.5, 0.25, 1.0 (one decimal at least)."""
    text = f"{w:g}"
    return text if "." in text or "e" in text else f"{w:.1f}"


def normalize_words(words, how: str) -> list[str]:
    """The same text normalisation for hypotheses and references before counting errors: ``none``; ``lower``
    (case); ``asr`` (case, punctuation removed or splitting a word as the toolkit's ASR text normaliser does:
    ``U.S.`` -> ``u s``, ``%`` -> ``percent``, ``&`` -> ``and``; inner apostrophes kept; numbers are not
    read out)."""
    if how == "none":
        return list(words)
    if how == "lower":
        return [w.lower() for w in words]
    from asr_lm_quant.text.normalize import asr_word_pieces
    return [p for w in words for p in asr_word_pieces(w)]


def parse_grid(spec: str, name: str) -> list[float]:
    """``"0.5,1,2"`` or ``"START:STOP:STEP"`` (STOP included) -> floats (the command line's own parser)."""
    try:
        return float_grid(spec)
    except ArgumentTypeError as e:
        raise InputError(None, f"--{name}: {e}") from None


@dataclass
class HypTable:
    """All hypotheses of one n-best set as arrays, grouped by utterance (rows of an utterance contiguous)."""
    utts: list
    start: np.ndarray       # [U+1] first row of each utterance
    acoustic: np.ndarray    # [N]
    lm: np.ndarray          # [N]
    nwords: np.ndarray      # [N]
    rank: np.ndarray        # [N]
    words: list             # [N] word lists, normalised for counting errors
    raw: list               # [N] word lists as the recogniser wrote them

    @classmethod
    def from_groups(cls, groups, per_token: str = "none", normalize: str = "none") -> "HypTable":
        """``groups``: per-utterance lists of NbestHyp. ``per_token`` (``none``, ``acoustic``, ``lm``, ``both``):
        which costs the file holds as averages per token, to be multiplied by the number of words plus one
        (the end of sentence), as end-to-end recognisers often report them. ``normalize``: see
        :func:`normalize_words` (the word count of the penalty is the recogniser's)."""
        utts, start, ac, lm, nw, rank, words, raw = [], [0], [], [], [], [], [], []
        for g in groups:
            utts.append(g[0].utterance)
            for h in sorted(g, key=lambda h: h.rank):
                k = len(h.words) + 1
                ac.append(h.acoustic_cost * (k if per_token in ("acoustic", "both") else 1))
                lm.append(h.lm_cost * (k if per_token in ("lm", "both") else 1))
                nw.append(len(h.words))
                rank.append(h.rank)
                words.append(normalize_words(h.words, normalize))
                raw.append(list(h.words))
            start.append(len(ac))
        if not utts:
            raise InputError(None, "no hypotheses to decide between")
        return cls(utts, np.asarray(start), np.asarray(ac, float), np.asarray(lm, float), np.asarray(nw),
                   np.asarray(rank), words, raw)

    def pick(self, lm_scale: float, penalty: float) -> np.ndarray:
        """Row of the cheapest hypothesis of each utterance (ties: the earlier row, i.e. the better rank)."""
        return self.lowest(self.acoustic + lm_scale * self.lm + penalty * self.nwords)

    def lowest(self, value: np.ndarray) -> np.ndarray:
        """Row of the lowest ``value`` [N] of each utterance (ties: the earlier row, i.e. the better rank)."""
        group = np.repeat(np.arange(len(self.utts)), np.diff(self.start))
        order = np.lexsort((np.arange(len(value)), value, group))
        first = np.r_[True, group[order][1:] != group[order][:-1]]
        return order[first]


@dataclass
class Counts:
    """Word errors of every hypothesis against its reference (None where the utterance has no reference)."""
    errors: np.ndarray      # [N] ins + del + sub
    ins: np.ndarray
    dels: np.ndarray
    subs: np.ndarray
    ref_words: np.ndarray   # [U]
    scored: np.ndarray      # [U] bool: has a reference

    @classmethod
    def of(cls, table: HypTable, ref: dict, *, nbest_name=None, ref_name=None) -> "Counts":
        """Counts of ``table`` against ``ref``; ``nbest_name``/``ref_name`` name the files in messages. Fails
        when no utterance has a reference; says on stderr how many have none (they are not scored)."""
        n = len(table.words)
        ins, dels, subs = np.zeros(n, int), np.zeros(n, int), np.zeros(n, int)
        ref_words = np.zeros(len(table.utts), int)
        scored = np.zeros(len(table.utts), bool)
        for u, utt in enumerate(table.utts):
            r = ref.get(utt)
            if r is None:
                continue
            scored[u], ref_words[u] = True, len(r)
            for i in range(table.start[u], table.start[u + 1]):
                ins[i], dels[i], subs[i] = utt_counts(r, table.words[i])
        where = f" {ref_name}" if ref_name else ""
        if not scored.any():
            raise InputError(nbest_name, f"none of the {len(table.utts)} utterances of the n-best list is in the "
                                         f"reference text{where} (e.g. {table.utts[0]!r})")
        skipped = len(table.utts) - int(scored.sum())
        if skipped:
            first = table.utts[int(np.flatnonzero(~scored)[0])]
            log.warning("%s: %d of %d utterances have no reference in%s (e.g. %r) and are not scored",
                        nbest_name or "n-best list", skipped, len(table.utts), where or " the reference text",
                        first)
        return cls(ins + dels + subs, ins, dels, subs, ref_words, scored)

    def oracle(self, table: HypTable) -> np.ndarray:
        """Row of each utterance's hypothesis with the fewest word errors (ties: the better rank): the n-best
        oracle, counted as :meth:`result` counts the decision."""
        return table.lowest(self.errors)

    def result(self, rows: np.ndarray, mask: np.ndarray | None = None) -> dict:
        """WER of the picked ``rows`` (one per utterance) over the utterances with a reference (and ``mask``)."""
        use = self.scored if mask is None else self.scored & mask
        r = rows[use]
        words = int(self.ref_words[use].sum())
        e = int(self.errors[r].sum())
        every = np.ones(len(self.scored), bool) if mask is None else mask
        return {"wer": 100.0 * e / words if words else None, "errors": e, "ref_words": words,
                "ins": int(self.ins[r].sum()), "del": int(self.dels[r].sum()), "sub": int(self.subs[r].sum()),
                "utterances": int(use.sum()), "not_scored": int((every & ~self.scored).sum())}


def subset_masks(utts, subsets) -> dict:
    """``{"total": all, name: utterances whose id starts with its prefix}`` for ``subsets`` [(name, prefix)]."""
    out = {"total": np.ones(len(utts), bool)}
    for name, prefix in subsets or []:
        out[name] = np.array([u.startswith(prefix) for u in utts])
    return out


def sweep(tables: dict, counts: dict, lm_scales, penalties) -> list[dict]:
    """Dev WER of every (weight, lm_scale, penalty); ``tables``/``counts``: weight (or None) -> table/counts."""
    rows = []
    with progress_bar(total=len(tables) * len(lm_scales) * len(penalties), desc="dev settings", unit=" setting",
                      mininterval=2.0) as bar:
        for w, t in tables.items():
            for s in lm_scales:
                for p in penalties:
                    res = counts[w].result(t.pick(s, p))
                    rows.append({"weight": w, "lm_scale": s, "penalty": p, **res})
                    bar.update(1)
    return rows


def best_setting(rows: list[dict]) -> dict:
    """The row with the fewest errors, the first in grid order among equals."""
    return first_lowest(rows, lambda r: r["errors"])
