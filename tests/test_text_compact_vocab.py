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


PLAIN = "<s> 0\n<unk> 1\nab 2\nc\u00a0d 3\n"  # a no-break space is part of a word, as Kaldi splits


@pytest.mark.parametrize("text", [
    PLAIN, PLAIN.rstrip("\n"), PLAIN + "\n", PLAIN.replace("ab 2", "ab 02"), PLAIN.replace("ab 2", "ab\t2"),
    PLAIN.replace("\n", "\r\n"), PLAIN.replace("ab 2", "ab  2"), PLAIN.replace("ab 2", " ab 2"),
    "\n" + PLAIN, PLAIN.replace("ab 2", "<s> 2"), PLAIN.replace("<unk> 1", "x 1"), PLAIN.replace("ab 2", "ab 4"),
    PLAIN.replace("ab 2", "ab 2 3"), PLAIN.replace("ab 2", "ab x"), "", "\n",
])
def test_direct_reading_agrees_with_the_plain_reader(tmp_path, text):
    """Every form of words.txt loads to the same words, or fails with the same message, as Vocabulary.load."""
    path = tmp_path / "words.txt"
    path.write_bytes(text.encode())
    try:
        expected = Vocabulary.load(path).words
    except InputError as e:
        with pytest.raises(InputError) as got:
            CompactVocabulary.load(path)
        assert str(got.value) == str(e)
    else:
        assert list(CompactVocabulary.load(path).words) == expected


def test_bad_utf8_and_compressed_files_go_through_the_plain_reader(tmp_path):
    import gzip

    (tmp_path / "bad.txt").write_bytes(b"<s> 0\n<unk> 1\n\xff 2\n")
    with pytest.raises(InputError, match="line 3.*UTF-8|UTF-8.*line 3|not valid UTF-8"):
        CompactVocabulary.load(tmp_path / "bad.txt")
    with gzip.open(tmp_path / "words.txt.gz", "wt") as f:
        f.write(PLAIN)
    assert list(CompactVocabulary.load(tmp_path / "words.txt.gz").words) == ["<s>", "<unk>", "ab", "c\u00a0d"]


def test_a_plain_file_is_read_without_a_list_of_words(tmp_path, monkeypatch):
    words = _words(2000, seed=5)
    Vocabulary(words).save(tmp_path / "words.txt")

    def refuse(*a, **k):
        raise AssertionError("the plain reader was used")

    monkeypatch.setattr(Vocabulary, "load", refuse)
    compact = CompactVocabulary.load(tmp_path / "words.txt")
    assert list(compact.words) == words and compact.encode(words[::7]) == list(range(0, 2000, 7))
