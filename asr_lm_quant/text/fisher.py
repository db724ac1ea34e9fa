"""Fisher English transcripts (LDC2004T19 / LDC2005T19) -> Switchboard-style LM text.

``map_fisher_line`` reproduces Kaldi's egs/swbd/s5c/local/fisher_map_words.pl on one line, rule by rule and
in its order (its output, including its quirks, is the reference): lower-case; delete ``*``, ``(`` and
``)``; skip lines left blank; delete ``<...>`` spans; split ``a,b``; drop the quote of ``'cause``-like
words; ``'em`` -> ``-em``; unquote ``'fragment'`` (twice); drop a lone quoted letter; remove dangling
``-`` and ``?``; ``non-X`` -> ``non X``; drop fragment dashes around real words; remove ``[[skip]]`` and
``[pause]``; noise tags -> ``[noise]`` / ``[vocalized-noise]`` / ``[laughter]``; word-initial ``'`` -> ``-``.

``fisher_transcript_lines`` reads ``data/trans/*/*.txt`` as Kaldi's local/swbd1_train_lms.sh does (comment
and empty lines dropped, the words from the 4th space-separated field on).
"""

from __future__ import annotations

import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import read_lines, split_fields

# Kaldi's script runs under Perl's byte semantics: \w and lc() are ASCII-only.
_A = re.ASCII
_FRAGMENT_WORDS = ("acceptable|arthritis|ball|cause|comes|course|eight|eighty|field|giving|habitating|heard|"
                   "hood|how|king|ninety|okay|paper|press|scripts|store|till|vascular|wood|what|york")
# (substring that must be present for the rule to apply, pattern, replacement); the check only saves time.
_SUBS = [
    ("<", re.compile(r"<[^>]*>", _A), ""),                                  # <german (( ja wohl )) >
    (",", re.compile(r"(\w),(\w| )", _A), r"\1 \2"),                        # commas between words
    ("'", re.compile(r"( |^)'(blade|cause|course|frisco|okay|plain|specially)( |$)", _A), r" \2 "),
    ("'em", re.compile(r"'em", _A), "-em"),
    ("'", re.compile(r"(^| )'(.*?)'( |$)", _A), r" \2 "),                   # 'kay' -> kay (twice: adjacent ones)
    ("'", re.compile(r"(^| )'(.*?)'( |$)", _A), r" \2 "),
    ("'", re.compile(r"( |^)'(\w)( |-|$)", _A), r"\1 "),                    # 'a- -> (nothing)
    ("-", re.compile(r"( |^)-( |$)", _A), " "),                             # dangling -
    ("?", re.compile(r"\?", _A), ""),
    ("non-", re.compile(r"( |^)non-(\w+)( |$)", _A), r" non \2 "),
    ("", re.compile(r"( |-)(" + _FRAGMENT_WORDS + r")(-| )", _A), r" \2 "),
    ("[", re.compile(r"\[\[skip\]\]", _A), " "),
    ("[", re.compile(r"\[pause\]", _A), " "),
    ("[", re.compile(r"\[breath\]", _A), "[noise]"),
    ("[", re.compile(r"\[cough\]", _A), "[noise]"),
    ("[", re.compile(r"\[lipsmack\]", _A), "[noise]"),
    ("[", re.compile(r"\[sigh\]", _A), "[noise]"),
    ("[", re.compile(r"\[sneeze\]", _A), "[noise]"),
    ("[", re.compile(r"\[mn\]", _A), "[vocalized-noise]"),
    ("[", re.compile(r"\[laugh\]", _A), "[laughter]"),
]
_BLANK = re.compile(r"^\s*$", _A)
_SPLIT = re.compile(r"\s+", _A)
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _perl_split(text: str) -> list[str]:
    # Perl's split /\s+/: a leading empty field is kept, trailing empty fields are dropped.
    fields = _SPLIT.split(text)
    while fields and fields[-1] == "":
        fields.pop()
    return fields


def map_fisher_line(line: str) -> str | None:
    """One Fisher transcript text (words only) mapped as fisher_map_words.pl does; None if it skips it.

    The result is the line the script prints (without the newline): it may start with a space or be empty.
    """
    line = line.translate(_UPPER)
    line = line.replace("*", "").replace("(", "").replace(")", "")
    if _BLANK.match(line):
        return None
    for trigger, pattern, repl in _SUBS:
        if trigger in line:
            line = pattern.sub(repl, line)
    words = [("-" + w[1:]) if w.startswith("'") else w for w in _perl_split(line)]
    return " ".join(words)


HESITATIONS = {"hmm": "hum", "mmm": "um", "mm": "um", "mhm": "um-hum"}


def map_hesitations(line: str) -> str:
    """Kaldi pytorchnn's hesitation mapping (an awk field loop): a line with no hesitation is kept byte for
    byte; otherwise its fields are re-joined with single spaces, as awk does when a field is assigned."""
    fields = split_fields(line)
    if not any(f in HESITATIONS for f in fields):
        return line
    return " ".join(HESITATIONS.get(f, f) for f in fields)


def fisher_transcript_files(fisher_dir) -> list[Path]:
    """``<dir>/data/trans/*/*.txt`` in the order of a C-locale shell glob."""
    d = Path(fisher_dir)
    trans = d / "data" / "trans"
    if not trans.is_dir():
        raise InputError(d, "cannot find Fisher transcripts (expected a data/trans/ directory)")
    files = sorted((p for p in trans.glob("*/*.txt") if p.is_file()),
                   key=lambda p: str(p.relative_to(trans)).encode("utf-8"))
    if not files:
        raise InputError(trans, "no transcript files (*/*.txt)")
    return files


def fisher_transcript_lines(fisher_dirs):
    """Words of each utterance line (``7.38 8.78 A: words``), as ``cut -d' ' -f4-`` gives them."""
    for d in fisher_dirs:
        for path in fisher_transcript_files(d):
            for n, line in read_lines(path):
                if line.startswith("#") or not line.strip():
                    continue
                fields = line.split(" ")
                if len(fields) < 3 or not fields[2].endswith(":") or not _is_time(fields[0]) \
                        or not _is_time(fields[1]):
                    raise InputError(path, f"expected 'start end side: words', got {line[:60]!r}", line=n)
                yield " ".join(fields[3:])


def _is_time(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def map_fisher_texts(texts):
    """Fisher LM text lines (as Kaldi's data/local/lm/fisher/text1.gz holds them) from transcript texts."""
    for text in texts:
        mapped = map_fisher_line(text)
        if mapped is not None:
            yield mapped


def fisher_lm_lines(fisher_dirs):
    """Fisher LM text lines from the LDC transcript directories."""
    return map_fisher_texts(fisher_transcript_lines(fisher_dirs))
