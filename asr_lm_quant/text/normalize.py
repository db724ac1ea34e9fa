"""Turn written, tokenised text (WikiText, PTB-style) into what a recogniser would output.

ASR-style text is lower case, without punctuation, one sentence per line. The choices for WikiText's markup:

* ``= Heading =`` lines (any number of ``=``) are dropped.
* ``1 @,@ 000`` -> ``1000`` (thousands separator joined away between digits).
* ``0 @.@ 7`` -> ``0 point 7`` (a decimal point is read out; digits are not verbalised).
* ``well @-@ known`` -> ``well known`` (a hyphenated compound is two spoken words, as in most ASR
  lexicons; this also keeps the vocabulary small).
* Sentences end at a ``.``, ``?`` or ``!`` token; a paragraph line becomes several sentences.
* Clitics split off by the tokeniser are joined back: ``it 's`` -> ``it's``, ``do n't`` -> ``don't``.
* ``%`` -> ``percent``, ``&`` -> ``and``; other punctuation inside a token splits it (``U.S.`` -> ``u s``,
  ``AC/DC`` -> ``ac dc``); quotes around words are removed.
* ``<unk>`` is kept as it is.
"""

from __future__ import annotations

import re

from asr_lm_quant.textio import split_fields

UNK = "<unk>"
_HEADING = re.compile(r"^=+\s.*\s=+$|^=+$")
_SENTENCE_END = frozenset({".", "?", "!"})
_CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "n't", "'t"})
_SYMBOL_WORDS = {"%": "percent", "&": "and"}
_DIGITS = re.compile(r"^\d+$")


def _pieces(token: str) -> list[str]:
    """Lower-case ``token`` and split it at punctuation, keeping letters, digits and inner apostrophes."""
    token = token.lower()
    out = []
    cur = []
    for ch in token:
        if ch.isalnum() or ch == "'":
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    pieces = []
    for p in out:
        p = p.strip("'")
        if p:
            pieces.append(p)
    return pieces


def asr_word_pieces(word: str) -> list[str]:
    """One word as the ``asr`` normalisation writes it, out of context: a symbol read out (``%`` ->
    ``percent``), anything else lower-cased and split at punctuation (``U.S.`` -> ``u s``)."""
    return [_SYMBOL_WORDS[word]] if word in _SYMBOL_WORDS else _pieces(word)


def normalize_asr_text(line: str) -> list[list[str]]:
    """Sentences (lists of words) of one line of tokenised text, normalised as described above."""
    text = line.strip()
    if not text or _HEADING.match(text):
        return []
    sentences: list[list[str]] = []
    words: list[str] = []
    glue = None  # pending joiner: "," or "." between digit groups
    for tok in split_fields(text):
        if tok in ("@,@", "@.@"):
            glue = tok[1]
            continue
        if tok == "@-@":
            glue = None
            continue
        if tok in _SENTENCE_END:
            if words:
                sentences.append(words)
            words = []
            glue = None
            continue
        if tok == UNK:
            words.append(UNK)
            glue = None
            continue
        if tok in _SYMBOL_WORDS:
            words.append(_SYMBOL_WORDS[tok])
            glue = None
            continue
        low = tok.lower()
        if low in _CLITICS and words and words[-1] != UNK:
            words[-1] += low
            glue = None
            continue
        pieces = _pieces(tok)
        if glue and pieces and words and _DIGITS.match(words[-1]) and _DIGITS.match(pieces[0]):
            if glue == ",":
                words[-1] += pieces.pop(0)
            else:
                words.append("point")
        glue = None
        words.extend(pieces)
    if words:
        sentences.append(words)
    return sentences
