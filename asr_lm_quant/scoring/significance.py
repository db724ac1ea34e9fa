"""Is a WER difference between two systems, scored on the same utterances, more than chance?

Three paired tests, each on per-utterance error counts:

- NIST's matched-pair sentence-segment word error test (MAPSSWE), as SCTK's ``sc_stats -t mapsswe`` runs it:
  the difference in errors of each segment, their mean over its standard error (sample deviation, n - 1) is
  taken as standard normal; a two-tailed test. Segments are whole utterances by default; ``segments="sctk"``
  cuts them where sc_stats does (after ``min_good`` words both systems have right, from the alignments). As in
  sc_stats, segments where neither system has an error are left out, and a set of identical differences
  (no variance) gives z = 0. The decision uses sc_stats's critical values (|z| > 1.960 at 95%, > 2.575 at
  99%); the p-value here is the exact normal tail (sc_stats prints a coarser, table-based one).
- A paired bootstrap (Bisani and Ney, ICASSP 2004): utterances drawn with replacement, the WER difference of
  each draw; a percentile confidence interval and the probability of improvement (the share of draws in which
  B has fewer errors than A).
- The sign test on the utterances where the two systems' error counts differ.

Differences are always system B minus system A (negative: B has the lower WER).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.wer import WerResult
from asr_lm_quant.textio import read_lines, split_fields

# sc_stats's two-tailed critical values (its statdist.c table): a difference is significant above them.
Z_CRIT = {0.95: 1.960, 0.99: 2.575}
ALPHA = 0.05
BOOTSTRAP_SAMPLES = 10000
BOOTSTRAP_SEED = 0
SEGMENT_MODES = ("utterance", "sctk")


@dataclass
class SystemErrors:
    """One system's per-utterance counts; ``ops`` (``"CCSDI..."`` per utterance) where alignments are known."""
    name: str
    source: str
    keys: list[str]
    ref_words: np.ndarray
    errors: np.ndarray
    ops: list[str] | None = field(default=None, repr=False)

    @property
    def wer(self) -> float:
        total = int(self.ref_words.sum())
        return 100.0 * int(self.errors.sum()) / total if total else float("nan")

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "utterances": len(self.keys),
                "ref_words": int(self.ref_words.sum()), "errors": int(self.errors.sum()), "wer": round(self.wer, 4)}


def _op(r, h, eps) -> str:
    if r == eps:
        return "I"
    if h == eps:
        return "D"
    return "C" if r == h else "S"


def from_result(name: str, source, res: WerResult, eps: str = "***") -> SystemErrors:
    """Counts (and, if it was scored with ``align=True``, the operations) of a scored hypothesis."""
    keys = list(res.utts)
    ops = None
    if keys and all(u.alignment is not None for u in res.utts.values()):
        ops = ["".join(_op(r, h, eps) for r, h in res.utts[k].alignment) for k in keys]
    return SystemErrors(name, str(source), keys, np.array([res.utts[k].ref_words for k in keys], dtype=np.int64),
                        np.array([res.utts[k].errors for k in keys], dtype=np.int64), ops)


def read_per_utt(path, name: str | None = None) -> SystemErrors:
    """A Kaldi ``wer_details/per_utt`` file: counts from its ``#csid`` lines, operations from its ``op`` lines."""
    counts: dict[str, tuple[int, int]] = {}
    ops: dict[str, str] = {}
    for n, line in read_lines(path):
        f = split_fields(line)
        if not f:
            continue
        if len(f) < 2 or f[1] not in ("ref", "hyp", "op", "#csid"):
            raise InputError(path, "not a per_utt line (expected 'utt-id ref|hyp|op|#csid ...')", line=n)
        key = f[0]
        if f[1] == "#csid":
            if len(f) != 6:
                raise InputError(path, f"expected 'utt-id #csid C S I D', got {len(f)} fields", line=n, key=key)
            try:
                c, s, i, d = (int(x) for x in f[2:])
            except ValueError:
                raise InputError(path, "#csid counts are not integers", line=n, key=key) from None
            if min(c, s, i, d) < 0:
                raise InputError(path, "negative #csid count", line=n, key=key)
            if key in counts:
                raise InputError(path, "utterance appears twice", line=n, key=key)
            counts[key] = (c + s + d, s + i + d)
        elif f[1] == "op":
            bad = [x for x in f[2:] if x not in ("C", "S", "I", "D")]
            if bad:
                raise InputError(path, f"unknown operation {bad[0]!r} in an op line", line=n, key=key)
            ops[key] = "".join(f[2:])
    if not counts:
        raise InputError(path, "no '#csid' lines: not a Kaldi per_utt file")
    keys = list(counts)
    have_ops = all(k in ops for k in keys)
    if have_ops:
        for k in keys:
            o = ops[k]
            if (o.count("C") + o.count("S") + o.count("D"), len(o) - o.count("C")) != counts[k]:
                raise InputError(path, "op line and #csid counts disagree", key=k)
    return SystemErrors(name or str(path), str(path), keys, np.array([counts[k][0] for k in keys], dtype=np.int64),
                        np.array([counts[k][1] for k in keys], dtype=np.int64),
                        [ops[k] for k in keys] if have_ops else None)


def check_same_utterances(systems: list[SystemErrors]) -> list[SystemErrors]:
    """All systems on the first one's utterances, in its order; a missing or extra utterance, or a different
    reference length, is an InputError naming the file and the utterance."""
    first = systems[0]
    out = [first]
    index = {k: i for i, k in enumerate(first.keys)}
    for s in systems[1:]:
        mine = {k: i for i, k in enumerate(s.keys)}
        for k in first.keys:
            if k not in mine:
                raise InputError(s.source, f"utterance is missing (it is in {first.source}); the systems must be "
                                           "scored on the same utterances", key=k)
        for k in s.keys:
            if k not in index:
                raise InputError(s.source, f"utterance is not in {first.source}; the systems must be scored on "
                                           "the same utterances", key=k)
        order = np.array([mine[k] for k in first.keys], dtype=np.int64)
        ref = s.ref_words[order]
        bad = np.nonzero(ref != first.ref_words)[0]
        if len(bad):
            k = first.keys[bad[0]]
            raise InputError(s.source, f"{ref[bad[0]]} reference words here, {first.ref_words[bad[0]]} in "
                                       f"{first.source}: were they scored against the same reference?", key=k)
        out.append(SystemErrors(s.name, s.source, list(first.keys), ref, s.errors[order],
                                [s.ops[i] for i in order] if s.ops is not None else None))
    return out


def sctk_segments(ops_a: str, ops_b: str, min_good: int = 2) -> list[tuple[int, int, int]]:
    """``(ref_words, errors_a, errors_b)`` of each segment sc_stats cuts from one utterance.

    A segment starts at an error of either system and ends once both systems have had ``min_good`` words in
    a row right (it keeps those words, and ``min_good - 1`` right words before it); the end of the utterance
    ends any open segment. Both alignments are to the same reference, so skipping insertions keeps them on
    the same reference word. As in sc_stats, the walk follows A's alignment: whatever of B's is left when it
    ends (insertions after the last reference word) joins the last segment; segments without errors are dropped.
    """
    n1, n2 = len(ops_a), len(ops_b)
    out = []

    def emit(b1, b2, e1, e2):
        seg1, seg2 = ops_a[max(b1, 0):e1 + 1], ops_b[max(b2, 0):e2 + 1]
        err1 = sum(o != "C" for o in seg1)
        err2 = sum(o != "C" for o in seg2)
        if err1 or err2:
            ref = (sum(o != "I" for o in seg1) + sum(o != "I" for o in seg2)) // 2
            out.append((ref, err1, err2))

    i1 = i2 = eog1 = eog2 = good = 0
    state = "b"  # b: between segments, e: in errors, g: counting right words after an error
    while i1 < n1:
        while i1 < n1 and ops_a[i1] == "I":
            i1, state = i1 + 1, "e"
        while i2 < n2 and ops_b[i2] == "I":
            i2, state = i2 + 1, "e"
        both_right = i1 < n1 and i2 < n2 and ops_a[i1] == "C" and ops_b[i2] == "C"
        if state == "b":
            if both_right:
                eog1, eog2 = i1, i2
            else:
                state = "e"
        elif both_right:
            good = 1 if state == "e" else good + 1
            if good == min_good:
                emit(eog1 - (min_good - 1), eog2 - (min_good - 1), i1, i2)
                eog1, eog2, state = i1, i2, "b"
            else:
                state = "g"
        else:
            state = "e"
        if i1 < n1:
            i1 += 1
        if i2 < n2:
            i2 += 1
    if state != "b" or i2 < n2:  # an open segment, or B's alignment goes on: the rest of both is one segment
        emit(eog1 - (min_good - 1), eog2 - (min_good - 1), n1 - 1, n2 - 1)
    return out


def segment_errors(a: SystemErrors, b: SystemErrors, segments: str = "utterance",
                   min_good: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Errors of A and of B in each segment that has an error (utterances, or sc_stats's segments)."""
    if segments == "utterance":
        keep = (a.errors + b.errors) > 0
        return a.errors[keep], b.errors[keep]
    if segments != "sctk":
        raise ValueError(f"segments must be one of {SEGMENT_MODES}, not {segments!r}")
    for s in (a, b):
        if s.ops is None:
            raise InputError(s.source, "sc_stats segments need alignments (hypothesis texts, or per_utt files "
                                       "with 'op' lines)")
    segs = [seg for oa, ob in zip(a.ops, b.ops) for seg in sctk_segments(oa, ob, min_good)]
    return (np.array([s[1] for s in segs], dtype=np.int64), np.array([s[2] for s in segs], dtype=np.int64))


def mapsswe(a: SystemErrors, b: SystemErrors, *, segments: str = "utterance", min_good: int = 2) -> dict:
    """The MAPSSWE statistic of B against A; ``z`` is positive when B makes more errors."""
    from scipy.stats import norm
    ea, eb = segment_errors(a, b, segments, min_good)
    d = (eb - ea).astype(np.float64)
    n = len(d)
    mean = float(d.mean()) if n else 0.0
    ss = float(((d - mean) ** 2).sum()) if n else 0.0
    if ss != 0.0:  # as sc_stats: no spread (or no segments) gives z = 0
        std = math.sqrt(ss / (n - 1))
        z = mean / (std / math.sqrt(n))
    else:
        std = z = 0.0
    p = float(2.0 * norm.sf(abs(z)))
    return {"segments": n, "segmentation": segments, "mean": mean, "std": std, "z": z, "p": p,
            "significant_95": abs(z) > Z_CRIT[0.95], "significant_99": abs(z) > Z_CRIT[0.99]}


def paired_bootstrap(a: SystemErrors, b: SystemErrors, *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = BOOTSTRAP_SEED, confidence: float = 0.95) -> dict:
    """Bisani and Ney's bootstrap of ``WER(B) - WER(A)``: percentile interval, probability of improvement."""
    if samples < 1:
        raise InputError(None, f"bootstrap samples must be at least 1, not {samples}")
    n = len(a.keys)
    if n == 0 or int(a.ref_words.sum()) == 0:
        raise InputError(a.source, "no reference words: nothing to compare")
    rng = np.random.default_rng(seed)
    diff = b.errors - a.errors
    deltas = np.empty(samples, dtype=np.float64)
    chunk = max(1, 2_000_000 // n)  # index arrays of a few MB at a time (the chunks depend on n only)
    for start in range(0, samples, chunk):
        m = min(chunk, samples - start)
        idx = rng.integers(0, n, size=(m, n))
        ref = a.ref_words[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            deltas[start:start + m] = 100.0 * diff[idx].sum(axis=1) / ref
    deltas = deltas[np.isfinite(deltas)]  # a draw of only empty references has no WER
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(deltas, [tail, 1.0 - tail])
    return {"samples": samples, "seed": seed, "confidence": confidence, "ci_low": float(lo), "ci_high": float(hi),
            "p_improvement": float(np.mean(deltas < 0)), "std": float(deltas.std(ddof=1)) if len(deltas) > 1 else 0.0}


def sign_test(a: SystemErrors, b: SystemErrors) -> dict:
    """Two-sided sign test over utterances whose error counts differ."""
    from scipy.stats import binomtest
    b_better = int((b.errors < a.errors).sum())
    a_better = int((a.errors < b.errors).sum())
    n = a_better + b_better
    p = float(binomtest(b_better, n, 0.5).pvalue) if n else 1.0
    return {"b_better": b_better, "a_better": a_better, "ties": len(a.keys) - n, "p": p}


def compare(a: SystemErrors, b: SystemErrors, *, segments: str = "utterance", min_good: int = 2,
            samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """All three tests of B against A (both on the same utterances, see :func:`check_same_utterances`)."""
    mp = mapsswe(a, b, segments=segments, min_good=min_good)
    return {"a": a.name, "b": b.name, "wer_a": a.wer, "wer_b": b.wer, "diff": b.wer - a.wer,
            "errors_a": int(a.errors.sum()), "errors_b": int(b.errors.sum()), "ref_words": int(a.ref_words.sum()),
            "utterances": len(a.keys), "mapsswe": mp, "bootstrap": paired_bootstrap(a, b, samples=samples, seed=seed),
            "sign": sign_test(a, b), "significant": mp["significant_95"]}


def marker(cmp: dict) -> str:
    """``**`` significant at 0.01, ``*`` at 0.05 (MAPSSWE), ``~`` not significant."""
    mp = cmp["mapsswe"]
    return "**" if mp["significant_99"] else "*" if mp["significant_95"] else "~"


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_ci(bs: dict) -> str:
    return f"[{bs['ci_low']:+.2f}, {bs['ci_high']:+.2f}]"


def comparisons_markdown(comparisons: list[dict]) -> str:
    lines = ["| system A | system B | WER A | WER B | B - A | MAPSSWE p | bootstrap 95% CI | P(B better) | "
             "significant (0.05) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c['a']} | {c['b']} | {c['wer_a']:.2f} | {c['wer_b']:.2f} | {c['diff']:+.2f} | "
                     f"{format_p(c['mapsswe']['p'])} | {format_ci(c['bootstrap'])} | "
                     f"{c['bootstrap']['p_improvement']:.3f} | {'yes' if c['significant'] else 'no'} |")
    return "\n".join(lines) + "\n"
