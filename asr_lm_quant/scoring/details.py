"""Kaldi's ``scoring_kaldi/wer_details/``: ``per_utt``, ``per_spk`` and ``ops`` in its exact layouts.

The layouts are those of Kaldi's ``wer_per_utt_details.pl``, ``wer_per_spk_details.pl`` and
``wer_ops_details.pl`` (the latter piped through ``sort -b -i -k 1,1 -k 4,4rn -k 2,2 -k 3,3`` in the C
locale), run on ``align-text --special-symbol='***'`` output.
"""

from __future__ import annotations

from collections import defaultdict

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.wer import WerResult

EPS = "***"


def _centre(s: str, width: int) -> str:
    # Odd padding goes on the left, as in the Kaldi script.
    right = (width - len(s)) // 2
    left = width - len(s) - right
    return " " * left + s + " " * right


def _op(r: str, h: str, eps: str) -> str:
    if h == eps:
        return "D"
    if r == eps:
        return "I"
    return "S" if r != h else "C"


def per_utt_lines(result: WerResult, *, eps: str = EPS):
    """Yield the ``ref``/``hyp``/``op``/``#csid`` lines of every aligned utterance."""
    for key, u in result.utts.items():
        if u.alignment is None:
            raise ValueError("per_utt needs alignments: score with align=True")
        refs, hyps, ops = [], [], []
        counts = {"C": 0, "S": 0, "I": 0, "D": 0}
        for r, h in u.alignment:
            op = _op(r, h, eps)
            counts[op] += 1
            w = max(len(r), len(h), len(op))
            refs.append(_centre(r, w))
            hyps.append(_centre(h, w))
            ops.append(_centre(op, w))
        yield f"{key} ref  " + "  ".join(refs)
        yield f"{key} hyp  " + "  ".join(hyps)
        yield f"{key} op   " + "  ".join(ops)
        yield f"{key} #csid {counts['C']} {counts['S']} {counts['I']} {counts['D']}"


def per_utt_text(result: WerResult, *, eps: str = EPS) -> str:
    return "".join(line + "\n" for line in per_utt_lines(result, eps=eps))


def _csid(u, eps):
    c = s = i = d = 0
    for r, h in u.alignment:
        op = _op(r, h, eps)
        c += op == "C"
        s += op == "S"
        i += op == "I"
        d += op == "D"
    return c, s, i, d


def per_spk_text(result: WerResult, utt2spk: dict[str, str], *, eps: str = EPS,
                 utt2spk_name: str | None = None) -> str:
    """Per-speaker raw counts and percentages, then the ``SUM`` rows."""
    width = max([15] + [len(s) for s in utt2spk.values()])
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])  # C S I D sent serr
    for key, u in result.utts.items():
        spk = utt2spk.get(key)
        if spk is None:
            raise InputError(utt2spk_name, "utterance has no speaker", key=key)
        c, s, i, d = _csid(u, eps)
        st = stats[spk]
        st[0] += c
        st[1] += s
        st[2] += i
        st[3] += d
        st[4] += 1
        st[5] += (s + i + d) != 0
    f = "%10s"
    lines = [("%-" + str(width) + "s id  " + " ".join([f] * 8))
             % ("SPEAKER", "#SENT", "#WORD", "Corr", "Sub", "Ins", "Del", "Err", "S.Err")]

    def rows(spk, c, s, i, d, sent, serr):
        word, err = c + s + d, s + d + i
        lines.append(("%-" + str(width) + "s raw " + " ".join(["%10d"] * 8))
                     % (spk, sent, word, c, s, i, d, err, serr))
        if word:
            w = float(word)
            lines.append(("%-" + str(width) + "s sys %10d %10d " + " ".join(["%10.2f"] * 6))
                         % (spk, sent, word, 100 * c / w, 100 * s / w, 100 * i / w, 100 * d / w,
                            100 * err / w, 100.0 * serr / sent))

    tot = [0] * 6
    for spk in sorted(stats):
        st = stats[spk]
        rows(spk, *st)
        tot = [a + b for a, b in zip(tot, st)]
    rows("SUM", *tot)
    return "".join(line + "\n" for line in lines)


def _c_sort_key(s: str) -> bytes:
    # ``sort -i`` in the C locale ignores bytes outside printable ASCII when comparing keys.
    return bytes(b for b in s.encode("utf-8") if 0x20 <= b < 0x7F)


def ops_text(result: WerResult, *, eps: str = EPS, max_width: int = 16) -> str:
    """How often each (ref, hyp) pair was correct, substituted, inserted or deleted, most frequent first."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for u in result.utts.values():
        if not u.alignment:  # the Kaldi script skips utterances with an empty alignment
            continue
        for r, h in u.alignment:
            counts[(r, h)] += 1
    if not counts:
        return ""
    word_len = min(max(max(len(r), len(h)) for r, h in counts), max_width)
    ops_len = max(len(str(n)) for n in counts.values())
    rows = []
    for (r, h), n in counts.items():
        if r == h:
            name = "correct"
        elif r == eps:
            name = "insertion"
        elif h == eps:
            name = "deletion"
        else:
            name = "substitution"
        line = f"{name:<14}{r:>{word_len}}    {h:>{word_len}}    {n:>{ops_len}}"
        rows.append(((_c_sort_key(name), -n, _c_sort_key(r), _c_sort_key(h), line.encode("utf-8")), line))
    rows.sort(key=lambda x: x[0])
    return "".join(line + "\n" for _, line in rows)
