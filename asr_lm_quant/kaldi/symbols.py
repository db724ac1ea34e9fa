"""Kaldi symbol tables (``data/lang/words.txt``): ``word id`` per line.

As ``utils/prepare_lang.sh`` writes it: ``<eps> 0``, the words ``1..N``, then ``#0``, ``<s>``, ``</s>``. Ids need
not be contiguous (some tables skip ids), but a word or an id may appear only once.
"""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import read_lines, split_fields

# Symbols that are never words of a hypothesis.
NON_WORDS = ("<eps>", "#0", "<s>", "</s>")


def is_disambiguation_symbol(word: str) -> bool:
    """Kaldi's disambiguation symbols: ``#`` followed by digits (``#0``, ``#1``...). A word ``#`` or ``#hash``
    is an ordinary word (PTB has ``#``)."""
    return len(word) > 1 and word[0] == "#" and word[1:].isascii() and word[1:].isdigit()


class SymbolTable:
    def __init__(self, pairs, path=None):
        self.path = path
        self.word_to_id: dict[str, int] = {}
        self.id_to_word: dict[int, str] = {}
        for w, i in pairs:
            if w in self.word_to_id:
                raise ValueError(f"duplicate word {w!r}")
            if i in self.id_to_word:
                raise ValueError(f"duplicate id {i}")
            self.word_to_id[w] = i
            self.id_to_word[i] = w

    def __len__(self):
        return len(self.word_to_id)

    def __contains__(self, word):
        return word in self.word_to_id

    def items(self):
        return sorted(self.word_to_id.items(), key=lambda kv: kv[1])

    def id(self, word: str) -> int:
        try:
            return self.word_to_id[word]
        except KeyError:
            raise InputError(self.path, f"word {word!r} is not in the symbol table") from None

    def word(self, i: int) -> str:
        try:
            return self.id_to_word[int(i)]
        except KeyError:
            raise InputError(self.path, f"word id {int(i)} is not in the symbol table") from None

    def words(self, ids, *, key=None) -> list[str]:
        """Map ids to words; an unknown id raises InputError naming the table and ``key``."""
        out = []
        get = self.id_to_word.get
        for i in ids:
            w = get(int(i))
            if w is None:
                raise InputError(self.path, f"word id {int(i)} is not in the symbol table", key=key)
            out.append(w)
        return out

    def ids(self, words, *, oov: str | None = None, key=None) -> list[int]:
        """Map words to ids; an unknown word maps to ``oov`` if given, else raises InputError."""
        oov_id = self.word_to_id.get(oov) if oov is not None else None
        if oov is not None and oov_id is None:
            raise InputError(self.path, f"OOV symbol {oov!r} is not in the symbol table")
        out = []
        for w in words:
            i = self.word_to_id.get(w, oov_id)
            if i is None:
                raise InputError(self.path, f"word {w!r} is not in the symbol table", key=key)
            out.append(i)
        return out

    @classmethod
    def load(cls, path) -> "SymbolTable":
        """The one reader of ``words.txt`` files (Kaldi's and ours): ``word id`` per line, fields split on
        ASCII whitespace only (as Kaldi and Perl split them); a word or an id used twice, a negative or
        non-integer id, bad UTF-8 or an empty table is an error naming the line."""
        path = Path(path)
        if not path.exists():
            raise InputError(path, "symbol table does not exist")
        if path.is_dir():
            raise InputError(path, "is a directory, not a symbol table (words.txt)")
        pairs, seen_w, seen_i = [], {}, {}
        for n, line in read_lines(path):
            fields = split_fields(line)
            if not fields:
                continue
            if len(fields) != 2:
                raise InputError(path, f"expected 'word id', got {line.rstrip()!r}", line=n)
            w, s = fields
            if not s.isdigit() or not s.isascii():
                raise InputError(path, f"id {s!r} is not a non-negative integer", line=n)
            i = int(s)
            if i >= 1 << 31:
                raise InputError(path, f"id {i} is too large for Kaldi (at most 2^31-1)", line=n)
            if w in seen_w:
                raise InputError(path, f"word {w!r} already defined on line {seen_w[w]}", line=n)
            if i in seen_i:
                raise InputError(path, f"id {i} already used on line {seen_i[i]}", line=n)
            seen_w[w], seen_i[i] = n, n
            pairs.append((w, i))
        if not pairs:
            raise InputError(path, "symbol table is empty")
        return cls(pairs, path)

    def words_in_order(self) -> list[str]:
        """The words by increasing id."""
        return [w for w, _ in self.items()]

    def save(self, path) -> None:
        with atomic_open(path) as f:
            for w, i in self.items():
                f.write(f"{w} {i}\n")

    @classmethod
    def from_words(cls, words, *, with_boundaries: bool = True) -> "SymbolTable":
        """A ``prepare_lang.sh``-style table: ``<eps>``, the sorted words, then ``#0 <s> </s>``."""
        words = sorted(set(words) - set(NON_WORDS))
        syms = ["<eps>"] + words + (["#0", "<s>", "</s>"] if with_boundaries else [])
        return cls([(w, i) for i, w in enumerate(syms)])


def unknown_word(words_path, explicit: str | None = None) -> str:
    """The unknown-word symbol that goes with a Kaldi ``words.txt``, found as Kaldi's scripts find it.

    ``explicit`` (an ``--unk`` option) wins; otherwise the lang dir's ``oov.txt`` beside ``words.txt``
    (``data/lang/oov.txt``, written by ``utils/prepare_lang.sh``, e.g. ``<UNK>`` or ``<unk>``); otherwise
    ``<unk>``. A symbol named by an option or ``oov.txt`` must be in ``words.txt``.
    """
    words_path = Path(words_path)
    source, sym = "--unk", explicit
    if sym is None:
        oov = words_path.parent / "oov.txt"
        if not oov.is_file():
            return "<unk>"
        fields = [w for _, line in read_lines(oov) for w in split_fields(line)]
        if len(fields) != 1:
            raise InputError(oov, f"expected one word (the unknown-word symbol), got {len(fields)}")
        source, sym = str(oov), fields[0]
    if split_fields(sym) != [sym]:
        raise InputError(None, f"{source}: bad unknown-word symbol {sym!r}")
    if sym not in SymbolTable.load(words_path):
        raise InputError(words_path, f"has no unknown-word symbol {sym!r} (from {source})")
    return sym

