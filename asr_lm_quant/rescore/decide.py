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
from dataclasses import dataclass

import numpy as np

from asr_lm_quant.errors import InputError
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
    from asr_lm_quant.text.normalize import _SYMBOL_WORDS, _pieces
    out = []
    for w in words:
        out.extend([_SYMBOL_WORDS[w]] if w in _SYMBOL_WORDS else [p.strip("'") for p in _pieces(w) if p.strip("'")])
    return out


def parse_grid(spec: str, name: str) -> list[float]:
    """``"0.5,1,2"`` or ``"START:STOP:STEP"`` (STOP included) -> floats."""
    try:
        if ":" in spec:
            a, b, c = (float(x) for x in spec.split(":"))
            if c <= 0 or b < a:
                raise ValueError
            return [round(a + k * c, 10) for k in range(int(np.floor((b - a) / c + 1e-9)) + 1)]
        vals = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(None, f"--{name} {spec!r}: expected numbers separated by commas or START:STOP:STEP") \
            from None
    if not vals or not all(np.isfinite(vals)):
        raise InputError(None, f"--{name} {spec!r}: no finite values")
    return vals


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
        cost = self.acoustic + lm_scale * self.lm + penalty * self.nwords
        group = np.repeat(np.arange(len(self.utts)), np.diff(self.start))
        order = np.lexsort((np.arange(len(cost)), cost, group))
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
    def of(cls, table: HypTable, ref: dict) -> "Counts":
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
        if not scored.any():
            raise InputError(None, f"none of the {len(table.utts)} utterances of the n-best list is in the "
                                   f"reference text (e.g. {table.utts[0]!r})")
        return cls(ins + dels + subs, ins, dels, subs, ref_words, scored)

    def result(self, rows: np.ndarray, mask: np.ndarray | None = None) -> dict:
        """WER of the picked ``rows`` (one per utterance) over the utterances with a reference (and ``mask``)."""
        use = self.scored if mask is None else self.scored & mask
        r = rows[use]
        words = int(self.ref_words[use].sum())
        e = int(self.errors[r].sum())
        return {"wer": 100.0 * e / words if words else None, "errors": e, "ref_words": words,
                "ins": int(self.ins[r].sum()), "del": int(self.dels[r].sum()), "sub": int(self.subs[r].sum()),
                "utterances": int(use.sum())}


def subset_masks(utts, subsets) -> dict:
    """``{"total": all, name: utterances whose id starts with its prefix}`` for ``subsets`` [(name, prefix)]."""
    out = {"total": np.ones(len(utts), bool)}
    for name, prefix in subsets or []:
        out[name] = np.array([u.startswith(prefix) for u in utts])
    return out


def sweep(tables: dict, counts: dict, lm_scales, penalties) -> list[dict]:
    """Dev WER of every (weight, lm_scale, penalty); ``tables``/``counts``: weight (or None) -> table/counts."""
    rows = []
    for w, t in tables.items():
        for s in lm_scales:
            for p in penalties:
                res = counts[w].result(t.pick(s, p))
                rows.append({"weight": w, "lm_scale": s, "penalty": p, **res})
    return rows


def best_setting(rows: list[dict]) -> dict:
    """The row with the fewest errors, the first in grid order among equals."""
    return first_lowest(rows, lambda r: r["errors"])
