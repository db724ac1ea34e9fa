"""The LM vocabulary: a list of words whose 0-based order is the model's index.

On disk it is a Kaldi-style symbol table (``word id`` per line, ids 0..N-1 in order), which is also what
Kaldi's pytorchnn recipe reads. ``<s>`` is both the sentence start and the sentence end (as in Kaldi's
pytorchnn models); ``<unk>`` stands for every out-of-vocabulary word.
"""

from __future__ import annotations


from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError

BOS = "<s>"
EOS = "<s>"
UNK = "<unk>"


def table_line(path, word) -> int | None:
    """The line of ``path`` that defines ``word`` (for messages)."""
    from asr_lm_quant.text.io import read_lines, split_fields
    for n, line in read_lines(path):
        f = split_fields(line)
        if f and f[0] == word:
            return n
    return None


class Vocabulary:
    def __init__(self, words):
        self.words = list(words)
        self.index = {}
        for i, w in enumerate(self.words):
            if w in self.index:
                raise ValueError(f"duplicate word {w!r} in vocabulary (ids {self.index[w]} and {i})")
            self.index[w] = i
        for required in (BOS, UNK):
            if required not in self.index:
                raise ValueError(f"vocabulary lacks {required!r}")
        self.bos = self.index[BOS]
        self.eos = self.index[EOS]
        self.unk = self.index[UNK]

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index

    def id(self, word: str) -> int:
        return self.index.get(word, self.unk)

    def encode(self, words) -> list[int]:
        """Word ids for ``words`` (OOVs become ``<unk>``), without sentence boundaries."""
        get, unk = self.index.get, self.unk
        return [get(w, unk) for w in words]

    def decode(self, ids) -> list[str]:
        return [self.words[i] for i in ids]

    def save(self, path):
        with atomic_open(path) as f:
            for i, w in enumerate(self.words):
                f.write(f"{w} {i}\n")

    @classmethod
    def load(cls, path) -> "Vocabulary":
        """Read ``word id`` lines; ids must be 0..N-1 in order (a gap or duplicate is an error)."""
        from asr_lm_quant.kaldi.symbols import SymbolTable

        table = SymbolTable.load(path)
        words = table.words_in_order()
        ids = [i for _, i in table.items()]
        if ids != list(range(len(ids))):
            gap = next(k for k, i in enumerate(ids) if i != k)
            raise InputError(path, f"id {ids[gap]} out of order: expected {gap} (ids must be 0..N-1 without "
                                   "gaps)", line=table_line(path, words[gap]))
        if not words:
            raise InputError(path, "vocabulary file is empty")
        try:
            return cls(words)
        except ValueError as e:
            raise InputError(path, str(e)) from None
