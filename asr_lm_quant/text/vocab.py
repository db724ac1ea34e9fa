"""The LM vocabulary: a list of words whose 0-based order is the model's index.

On disk it is a Kaldi-style symbol table (``word id`` per line, ids 0..N-1 in order), which is also what
Kaldi's pytorchnn recipe reads. ``<s>`` is both the sentence start and the sentence end (as in Kaldi's
pytorchnn models); ``<unk>`` stands for every out-of-vocabulary word.
"""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError

BOS = "<s>"
EOS = "<s>"
UNK = "<unk>"


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
        path = Path(path)
        if not path.exists():
            raise InputError(path, "vocabulary file does not exist")
        words = []
        seen = {}
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise InputError(path, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
        for n, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise InputError(path, f"expected 'word id', got {line!r}", line=n)
            word, sid = fields
            try:
                i = int(sid)
            except ValueError:
                raise InputError(path, f"id {sid!r} is not an integer", line=n) from None
            if word in seen:
                raise InputError(path, f"word {word!r} already has id {seen[word]}", line=n)
            if i != len(words):
                raise InputError(path, f"id {i} out of order: expected {len(words)} (ids must be 0..N-1 "
                                       "without gaps or duplicates)", line=n)
            seen[word] = i
            words.append(word)
        if not words:
            raise InputError(path, "vocabulary file is empty")
        try:
            return cls(words)
        except ValueError as e:
            raise InputError(path, str(e)) from None
