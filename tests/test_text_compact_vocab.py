"""CompactVocabulary: the same answers as Vocabulary from flat arrays, and what packed scoring loads."""

import random

import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.text.vocab import CompactVocabulary, Vocabulary


def _words(n, seed=0):
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz'-éßж日"
    out, seen = ["<s>", "<unk>"], {"<s>", "<unk>"}
    while len(out) < n:
        w = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def test_same_answers_as_the_plain_vocabulary():
    words = _words(3000)
    plain, compact = Vocabulary(words), CompactVocabulary(words)
    assert len(compact) == len(plain) == 3000
    assert (compact.bos, compact.eos, compact.unk) == (plain.bos, plain.eos, plain.unk) == (0, 0, 1)
    rng = random.Random(1)
    queries = [rng.choice(words) for _ in range(2000)] + ["", "zzzzzzzzzzzzzz", "<S>", "\udcff", "日本"]
    assert compact.encode(queries) == plain.encode(queries)
    assert [compact.id(q) for q in queries] == [plain.id(q) for q in queries]
    assert [q in compact for q in queries] == [q in plain for q in queries]
    assert 5 not in compact
    assert list(compact.words) == words and compact.words == words
    assert compact.words[7] == words[7] and compact.words[-1] == words[-1] and compact.words[2:5] == words[2:5]
    with pytest.raises(IndexError):
        compact.words[3000]
    ids = [rng.randrange(3000) for _ in range(500)]
    assert compact.decode(ids) == plain.decode(ids)
    with pytest.raises(IndexError):
        compact.decode([3000])
    assert compact.index.get(words[11]) == 11 and compact.index[words[12]] == 12
    assert compact.index.get("not-a-word", -7) == -7 and "not-a-word" not in compact.index
    with pytest.raises(KeyError):
        compact.index["not-a-word"]
    assert compact.text() == "\n".join(words)


def test_duplicates_and_missing_symbols_are_refused():
    with pytest.raises(ValueError, match="duplicate word 'a'"):
        CompactVocabulary(["<s>", "<unk>", "a", "b", "a"])
    with pytest.raises(ValueError, match="lacks '<unk>'"):
        CompactVocabulary(["<s>", "a"])


def test_load_and_save_round_trip_with_the_plain_checks(tmp_path):
    words = _words(500, seed=3)
    Vocabulary(words).save(tmp_path / "words.txt")
    compact = CompactVocabulary.load(tmp_path / "words.txt")
    assert list(compact.words) == words
    compact.save(tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_bytes() == (tmp_path / "words.txt").read_bytes()
    (tmp_path / "bad.txt").write_text("<s> 0\n<unk> 2\n")
    with pytest.raises(InputError, match="out of order"):
        CompactVocabulary.load(tmp_path / "bad.txt")


def test_far_smaller_than_the_plain_vocabulary():
    import tracemalloc

    n = 20000
    sizes = {}
    for cls in (Vocabulary, CompactVocabulary):
        tracemalloc.start()
        v = cls([f"word{i}" for i in range(n)] + ["<s>", "<unk>"])  # strings made as a file's reader makes them
        sizes[cls.__name__] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del v
    assert sizes["CompactVocabulary"] < 30 * n  # bytes a word
    assert sizes["CompactVocabulary"] * 4 < sizes["Vocabulary"]
