"""Word error rate as Kaldi's ``compute-wer`` and NIST's ``sclite`` count it.

Kaldi weighs every insertion, deletion and substitution as 1 (kaldialign wraps Kaldi's own edit distance);
sclite weighs them 3/3/4, which can prefer an alignment with more errors (``a b c d e`` vs ``d e x y z``:
Kaldi 5 substitutions, sclite 3 deletions + 3 insertions). Among equal-cost alignments sclite's
back-pointers prefer a substitution or match, then a deletion, then an insertion; kaldialign's
``sclite_mode`` breaks those ties differently (different error totals on about 5% of random utterances),
so ``sclite=True`` uses ``sclite_align`` below, which follows sclite's rule. The default gives Kaldi's counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import kaldialign
import numpy as np

from asr_lm_quant.errors import InputError

MODES = ("present", "all", "strict")


@dataclass
class UttScore:
    """One utterance: its error counts (and its alignment if asked for)."""
    ref_words: int
    ins: int
    dels: int
    subs: int
    alignment: list[tuple[str, str]] | None = None

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def corr(self) -> int:
        return self.ref_words - self.dels - self.subs


@dataclass
class WerResult:
    """Totals over a set of utterances, plus per-utterance scores in reference order."""
    ref_words: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    sentences: int = 0
    sentence_errors: int = 0
    absent: int = 0
    utts: dict[str, UttScore] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def corr(self) -> int:
        return self.ref_words - self.dels - self.subs

    @property
    def wer(self) -> float:
        """Percent WER as a plain float (nan when the reference has no words)."""
        return 100.0 * self.errors / self.ref_words if self.ref_words else float("nan")

    @property
    def ser(self) -> float:
        return 100.0 * self.sentence_errors / self.sentences if self.sentences else float("nan")

    def wer_line(self) -> str:
        """``%WER 12.80 [ 5503 / 42989, 1025 ins, 1360 del, 3118 sub ]`` exactly as compute-wer prints it."""
        partial = " [PARTIAL]" if self.absent else ""
        return (f"%WER {kaldi_percent(self.errors, self.ref_words)} [ {self.errors} / {self.ref_words}, "
                f"{self.ins} ins, {self.dels} del, {self.subs} sub ]{partial}")

    def ser_line(self) -> str:
        return f"%SER {kaldi_percent(self.sentence_errors, self.sentences)} [ {self.sentence_errors} / {self.sentences} ]"

    def kaldi_report(self) -> str:
        """The three lines compute-wer writes to stdout."""
        return (f"{self.wer_line()}\n{self.ser_line()}\n"
                f"Scored {self.sentences} sentences, {self.absent} not present in hyp.\n")

    def to_dict(self) -> dict:
        return {"wer": round(self.wer, 4) if self.ref_words else None, "errors": self.errors,
                "ref_words": self.ref_words, "ins": self.ins, "del": self.dels, "sub": self.subs,
                "corr": self.corr, "sentences": self.sentences, "sentence_errors": self.sentence_errors,
                "ser": round(self.ser, 4) if self.sentences else None, "absent": self.absent,
                "wer_line": self.wer_line()}


def kaldi_percent(num: int, den: int) -> str:
    """``100 * num / den`` formatted as compute-wer does: float32 arithmetic, two decimals.

    compute-wer divides two float32 values, multiplies by the double 100.0 and stores the result in a float32
    before printing with ``std::fixed`` precision 2; doing the same keeps the last digit identical.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float32(num) / np.float32(den)
        value = np.float32(100.0 * float(ratio))
    if np.isnan(value):
        return "-nan"  # x86 produces the negative default NaN for 0/0, and iostream prints its sign
    if np.isinf(value):
        return "inf"
    return f"{float(value):.2f}"


SCLITE_SUB, SCLITE_INS, SCLITE_DEL = 4, 3, 3


def sclite_align(ref: list[str], hyp: list[str], eps: str = "***") -> list[tuple[str, str]]:
    """Minimum 3/3/4-cost alignment with sclite's tie-breaking (``net_dp.c``: diagonal, then deletion)."""
    n, m = len(ref), len(hyp)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]  # 0 diagonal, 1 deletion (ref word), 2 insertion
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + SCLITE_INS
        back[0][j] = 2
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + SCLITE_DEL
        back[i][0] = 1
        r = ref[i - 1]
        prev, cur, bk = cost[i - 1], cost[i], back[i]
        for j in range(1, m + 1):
            sub = prev[j - 1] + (0 if r == hyp[j - 1] else SCLITE_SUB)
            dele = prev[j] + SCLITE_DEL
            ins = cur[j - 1] + SCLITE_INS
            if sub <= dele and sub <= ins:
                cur[j], bk[j] = sub, 0
            elif dele < ins:
                cur[j], bk[j] = dele, 1
            else:
                cur[j], bk[j] = ins, 2
    out = []
    i, j = n, m
    while i > 0 or j > 0:
        b = back[i][j]
        if b == 0:
            out.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif b == 1:
            out.append((ref[i - 1], eps))
            i -= 1
        else:
            out.append((eps, hyp[j - 1]))
            j -= 1
    out.reverse()
    return out


def _count_alignment(pairs, eps) -> tuple[int, int, int]:
    ins = dels = subs = 0
    for r, h in pairs:
        if r == eps:
            ins += 1
        elif h == eps:
            dels += 1
        elif r != h:
            subs += 1
    return ins, dels, subs


def utt_counts(ref: list[str], hyp: list[str], *, sclite: bool = False) -> tuple[int, int, int]:
    """``(ins, del, sub)`` of one utterance."""
    if not ref and not hyp:
        return 0, 0, 0
    if sclite:
        return _count_alignment(sclite_align(ref, hyp, None), None)
    d = kaldialign.edit_distance(ref, hyp)
    return d["ins"], d["del"], d["sub"]


def align_words(ref: list[str], hyp: list[str], *, eps: str = "***", sclite: bool = False):
    """Aligned ``(ref_word, hyp_word)`` pairs, ``eps`` standing for the missing side (as align-text)."""
    if not ref and not hyp:
        return []
    if sclite:
        return sclite_align(ref, hyp, eps)
    return [(r, h) for r, h in kaldialign.align(ref, hyp, eps)]


def score_texts(ref: dict[str, list[str]], hyp: dict[str, list[str]], *, mode: str = "present",
                sclite: bool = False, align: bool = False, eps: str = "***",
                hyp_name: str | None = None) -> WerResult:
    """Score hypotheses against references, utterance by utterance in reference order.

    ``mode`` is compute-wer's: ``present`` skips references without a hypothesis (counted as absent and
    flagged ``[PARTIAL]``), ``all`` scores them against an empty hypothesis, ``strict`` raises InputError.
    Hypotheses without a reference are ignored, as in Kaldi. ``align=True`` also keeps each alignment
    (align-text's, for the per-utterance details).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    res = WerResult()
    for key, r in ref.items():
        h = hyp.get(key)
        if h is None:
            if mode == "strict":
                raise InputError(hyp_name, "no hypothesis for this utterance (strict mode)", key=key)
            res.absent += 1
            if mode == "present":
                continue
            h = []
        ins, dels, subs = utt_counts(r, h, sclite=sclite)
        u = UttScore(len(r), ins, dels, subs)
        if align:
            u.alignment = align_words(r, h, eps=eps, sclite=sclite)
        res.utts[key] = u
        res.ref_words += len(r)
        res.ins += ins
        res.dels += dels
        res.subs += subs
        res.sentences += 1
        res.sentence_errors += r != h
    return res
