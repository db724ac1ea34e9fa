"""Switchboard (MS-State ms98) word mapping and acronym formatting, as Kaldi's egs/swbd/s5c does them.

- ``map_swbd_word`` follows local/swbd1_map_words.pl rule by rule (first match of each rule only, in order):
  ``[laughter-X]`` -> ``X``, ``[A/B]`` -> ``A``, ``-[AN]Y`` -> ``-Y``, ``AB[SOLUTE]-`` -> ``AB-``,
  ``{W}`` -> ``W``, ``THEM_1`` -> ``THEM`` (and the script's other rules, including its quirks).
- ``find_acronyms`` is the dictionary-based discovery of local/format_acronyms_dict.py: a dictionary word
  whose pronunciation is its letters spelled out (``ibm  ay b iy eh m``) is an acronym, written
  ``i._b._m.`` (``ibm's`` -> ``i._b._m.'s``, ``tvs`` -> ``t._v.s``).
- ``map_acronyms`` rewrites a transcript with that map as local/map_acronyms_transcripts.py does (``i`` on
  its own is never rewritten), then lower-cases it.
"""

from __future__ import annotations

import re

from asr_lm_quant.textio import split_fields

# Letter pronunciations in the ms98 phone set (what Kaldi's local/MSU_single_letter.txt holds).
LETTER_PRONS = {
    "A": "ey", "B": "b iy", "C": "s iy", "D": "d iy", "E": "iy", "F": "eh f", "G": "jh iy", "H": "ey ch",
    "I": "ay", "J": "jh ey", "K": "k ey", "L": "eh l", "M": "eh m", "N": "eh n", "O": "ow", "P": "p iy",
    "Q": "k y uw", "R": "aa r", "S": "eh s", "T": "t iy", "U": "y uw", "V": "v iy", "W": "d ah b ax l y uw",
    "X": "eh k s", "Y": "w ay", "Z": "z iy",
}

_NB = r"[^\[\]]"  # any character but a bracket
_RULES = [
    # [laughter-story] -> story (a trailing - is kept)
    (re.compile(r"(|-)^\[LAUGHTER-(.+)\](|-)$", re.I), r"\1\2\3"),
    # [it'n/isn't] -> it'n : the spoken form of a mispronunciation
    (re.compile(r"^\[(.+)/.+\](|-)$"), r"\1\2"),
    # -[an]y -> -y : a partial word missing its start
    (re.compile(r"^(|-)\[" + _NB + r"+\](.+)$"), r"-\2"),
    # ab[solute]- -> ab- : a partial word missing its end
    (re.compile(r"^(.+)\[" + _NB + r"+\](|-)$"), r"\1-"),
    # ex[specially]-/especially] -> ex (a mistake in the input)
    (re.compile(r"(" + _NB + r"+)\[.+\]$"), r"\1"),
    # {yuppiedom} -> yuppiedom
    (re.compile(r"^\{(.+)\}$"), r"\1"),
    # ammu[n]it- : Kaldi's rule keeps the bracketed letter and drops its neighbours (ammn-t-)
    (re.compile(r"[A-Z]\[(" + _NB + r")+\][A-Z]", re.I), r"\1-"),
    # them_1 -> them
    (re.compile(r"_\d"), ""),
]


def map_swbd_word(word: str) -> str:
    if "[" not in word and "{" not in word and "_" not in word:
        return word  # no rule can apply: the common case, kept fast
    for pattern, repl in _RULES:
        word = pattern.sub(repl, word, count=1)
    return word


def map_swbd_words(words) -> list[str]:
    return [map_swbd_word(w) for w in words]


_ACRONYM_SHAPE = re.compile(r"^[A-Za-z]+$|^[A-Za-z]+'s$|^[A-Za-z]+s$")


def _spelled(letters: str) -> str:
    return " ".join(LETTER_PRONS[c.upper()] for c in letters)


def _dotted(letters: str) -> str:
    return "._".join(c.lower() for c in letters) + "."


def acronym_form(word: str, pron: str) -> str | None:
    """The acronym spelling of ``word`` if ``pron`` (space-separated phones) spells its letters, else None."""
    if not pron or not _ACRONYM_SHAPE.match(word):
        return None
    if word.endswith("'s") and pron[-1] in "sz":
        if _spelled(word[:-2]) == pron[:-2]:
            return _dotted(word[:-2]) + "'s"
    elif word.endswith("s") and pron[-1] in "sz":
        if word[:-1] and _spelled(word[:-1]) == pron[:-2]:
            return _dotted(word[:-1]) + "s"
    elif "'" not in word and not word.endswith("s"):
        if _spelled(word) == pron:
            return _dotted(word)
    return None


def read_ms98_lexicon(lines):
    """``(word, pron)`` pairs from sw-ms98-dict.text lines ``(line_no, text)`` as Kaldi's dictionary prep
    sees them: comments and blank lines dropped, words mapped by ``map_swbd_word``."""
    for _, line in lines:
        if line.startswith("#"):
            continue
        fields = split_fields(line)
        if not fields:
            continue
        yield map_swbd_word(fields[0]), " ".join(fields[1:])


def find_acronyms(lexicon) -> dict[str, str]:
    """Acronym map ``word -> a._b._c.`` from ``(word, pron)`` pairs; Kaldi adds the single letters
    ``A``..``Z`` (with their letter pronunciations) to the lexicon first, and so do we."""
    entries = list(lexicon) + list(LETTER_PRONS.items())
    acronyms = {}
    for word, pron in sorted(set(entries)):
        form = acronym_form(word, pron)
        if form is not None:
            acronyms[word] = form
    return acronyms


def lexicon_words(lexicon, acronyms: dict[str, str]) -> list[str]:
    """The word list of Kaldi's final Switchboard lexicon (lexicon5.txt), C-sorted: dictionary words (acronyms
    in their dotted form), the letters, ``i``, the noise words, ``!sil`` and ``<unk>``, all lower case."""
    words = {"!sil", "[vocalized-noise]", "[noise]", "[laughter]", "<unk>", "i"}
    for word, pron in list(lexicon) + list(LETTER_PRONS.items()):
        form = acronym_form(word, pron)
        words.add((form if form is not None else word).lower())
    return sorted(words, key=lambda w: w.encode("utf-8"))


_SINGLE_UPPER = re.compile(r"^[A-Z]$")


def map_acronyms(words: list[str], acronyms: dict[str, str]) -> list[str]:
    """Rewrite acronyms in a transcript (without its utterance id) and lower-case it."""
    items = list(words)
    n = len(items)
    # An upper-case I between upper-case single letters is part of an acronym (I B M).
    for i in range(n):
        if items[i] == "I":
            x = 0
            while i - 1 - x >= 0 and _SINGLE_UPPER.match(items[i - 1 - x]):
                x += 1
            y = 0
            while i + 1 + y < n and _SINGLE_UPPER.match(items[i + 1 + y]):
                y += 1
            if x + y > 0:
                for j in range(i - x, i + y + 1):
                    items[j] = acronyms[items[j]]
    for i in range(n):
        if items[i] not in ("I", "i") and items[i] in acronyms:
            items[i] = acronyms[items[i]]
    return [w.lower() for w in items]
