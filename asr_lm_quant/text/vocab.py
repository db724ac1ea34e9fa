"""The LM vocabulary: a list of words whose 0-based order is the model's index.

On disk it is a Kaldi-style symbol table (``word id`` per line, ids 0..N-1 in order), which is also what
Kaldi's pytorchnn recipe reads. ``<s>`` is both the sentence start and the sentence end (as in Kaldi's
pytorchnn models); ``<unk>`` stands for every out-of-vocabulary word.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError

BOS = "<s>"
EOS = "<s>"
UNK = "<unk>"


def table_line(path, word) -> int | None:
    """The line of ``path`` that defines ``word`` (for messages)."""
    from asr_lm_quant.textio import read_lines, split_fields
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

    def text(self) -> str:
        """The words joined by newlines (what a model file's checksum covers)."""
        return "\n".join(self.words)

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


class CompactVocabulary(Vocabulary):
    """The same vocabulary in three flat arrays instead of a list and a dict of Python strings: the UTF-8 words
    end to end, their offsets, and an open-addressing hash table of ids (15-30 bytes a word against about
    230; a 30k-word vocabulary takes 0.6 MB instead of ~7 MB of heap). Loaded with packed models for scoring,
    where the vocabulary would otherwise be most of a 2-bit model's memory beside its codes. A lookup costs
    about five times a dict's (2 us a word measured on a loaded 2-core VM), nothing beside scoring the word."""

    def __init__(self, words):
        words = list(words)
        self._fill((w.encode("utf-8", "surrogatepass") for w in words), len(words))

    def _fill(self, encoded, n: int) -> None:
        """Build the arrays from ``n`` UTF-8 words, one at a time (no list of them is ever held)."""
        from array import array

        blob = bytearray()
        self._offsets = offsets = array("q", [0]) * (n + 1)
        size = 1 << max(4, (2 * n).bit_length())  # load factor at most 1/2: short probes
        self._mask = mask = size - 1
        self._slots = slots = array("i", [-1]) * size
        count = 0
        for i, b in enumerate(encoded):
            h = zlib.crc32(b) & mask
            while (j := slots[h]) >= 0:
                if blob[offsets[j]:offsets[j + 1]] == b:
                    raise ValueError(f"duplicate word {b.decode('utf-8', 'replace')!r} in vocabulary "
                                     f"(ids {j} and {i})")
                h = (h + 1) & mask
            slots[h] = i
            blob += b
            offsets[i + 1] = len(blob)
            count += 1
        if count != n:
            raise ValueError(f"{count} words where {n} were announced")
        self._blob = bytes(blob)
        del blob
        if len(self._blob) < 1 << 31:  # 4-byte offsets for every real vocabulary
            self._offsets = array("i", offsets)
        for required in (BOS, UNK):
            if self._find(required) < 0:
                raise ValueError(f"vocabulary lacks {required!r}")
        self.bos, self.eos, self.unk = self._find(BOS), self._find(EOS), self._find(UNK)

    def _find(self, word: str) -> int:
        b = word.encode("utf-8", "surrogatepass")
        slots, offsets, blob, mask = self._slots, self._offsets, self._blob, self._mask
        h = zlib.crc32(b) & mask
        while True:
            i = slots[h]
            if i < 0:
                return -1
            if offsets[i + 1] - offsets[i] == len(b) and blob[offsets[i]:offsets[i + 1]] == b:
                return i
            h = (h + 1) & mask

    def _word(self, i: int) -> str:
        return self._blob[self._offsets[i]:self._offsets[i + 1]].decode("utf-8", "surrogatepass")

    def text(self) -> str:
        """The words joined by newlines (as ``"\\n".join(words)``), without a string per word."""
        out = bytearray(len(self._blob) + len(self) - 1)
        offsets, pos = self._offsets, 0
        for i in range(len(self)):
            if i:
                out[pos] = 10
                pos += 1
            n = offsets[i + 1] - offsets[i]
            out[pos:pos + n] = self._blob[offsets[i]:offsets[i + 1]]
            pos += n
        return out.decode("utf-8", "surrogatepass")

    @property
    def words(self) -> "_CompactWords":
        return _CompactWords(self)

    @property
    def index(self) -> "_CompactIndex":
        return _CompactIndex(self)

    def __len__(self):
        return len(self._offsets) - 1

    def __contains__(self, word):
        return isinstance(word, str) and self._find(word) >= 0

    def id(self, word: str) -> int:
        i = self._find(word)
        return self.unk if i < 0 else i

    def encode(self, words) -> list[int]:
        find, unk = self._find, self.unk
        return [i if i >= 0 else unk for i in map(find, words)]

    def decode(self, ids) -> list[str]:
        n = len(self)
        out = []
        for i in ids:
            if not 0 <= i < n:
                raise IndexError(f"word id {i} out of range (vocabulary of {n})")
            out.append(self._word(i))
        return out

    @classmethod
    def load(cls, path) -> "CompactVocabulary":
        """As :meth:`Vocabulary.load` (the same checks and messages), held compactly. A plain ``word id`` file
        with ids 0..N-1 in order is read straight into the arrays, one line at a time: going through a list
        and a dict of the words would leave most of a megabyte of them in the heap for good (Python's
        small-object arenas are given back only when empty). Anything else goes through the plain reader,
        which names what is wrong."""
        fast = cls._load_plain_file(path)
        if fast is not None:
            return fast
        words = Vocabulary.load(path).words
        try:
            return cls(words)
        except ValueError as e:  # cannot happen after the checks above; kept for a clear message
            raise InputError(path, str(e)) from None

    @classmethod
    def _load_plain_file(cls, path) -> "CompactVocabulary | None":
        """The vocabulary of an uncompressed, well-formed ``words.txt`` (``word id`` lines, one space, ids
        0..N-1 written plainly, a word of no ASCII whitespace, valid UTF-8), or None for anything else."""
        from pathlib import Path

        path = Path(path)
        if path.suffix in (".gz", ".xz", ".bz2") or not path.is_file():
            return None
        try:
            data = path.read_bytes()
            data.decode("utf-8")  # the check only: strict, as the plain reader decodes
        except (OSError, UnicodeDecodeError):
            return None
        n = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        if not data or n == 0:
            return None
        bad = (b"\t", b"\r", b"\f", b"\v")

        def lines():
            pos, i = 0, 0
            while pos < len(data):
                end = data.find(b"\n", pos)
                if end < 0:
                    end = len(data)
                line = data[pos:end]
                sp = line.find(b" ")
                if sp <= 0 or line[sp + 1:] != str(i).encode() or any(c in line for c in bad):
                    raise _NotPlain
                yield line[:sp]
                pos, i = end + 1, i + 1

        v = cls.__new__(cls)
        try:
            v._fill(lines(), n)
        except (_NotPlain, ValueError):
            return None
        return v


class _NotPlain(Exception):
    """A words.txt line outside the fast reader's plain form."""


class _CompactWords(Sequence):
    """``CompactVocabulary.words``: the words by id, decoded on access."""

    def __init__(self, vocab: CompactVocabulary):
        self._v = vocab

    def __len__(self):
        return len(self._v)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._v._word(k) for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("word id out of range")
        return self._v._word(i)

    def __iter__(self):
        return map(self._v._word, range(len(self)))

    def __eq__(self, other):
        return isinstance(other, (list, tuple, Sequence)) and len(self) == len(other) and all(
            a == b for a, b in zip(self, other))

    __hash__ = None


class _CompactIndex(Mapping):
    """``CompactVocabulary.index``: word -> id, as the dict of :class:`Vocabulary`."""

    def __init__(self, vocab: CompactVocabulary):
        self._v = vocab

    def __getitem__(self, word):
        i = self._v._find(word) if isinstance(word, str) else -1
        if i < 0:
            raise KeyError(word)
        return i

    def get(self, word, default=None):
        i = self._v._find(word) if isinstance(word, str) else -1
        return default if i < 0 else i

    def __contains__(self, word):
        return word in self._v

    def __iter__(self):
        return iter(self._v.words)

    def __len__(self):
        return len(self._v)
