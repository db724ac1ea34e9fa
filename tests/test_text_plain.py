import gzip
import json
import lzma

import pytest

from asr_lm_quant.cli import main as cli_main
from asr_lm_quant.errors import InputError
from asr_lm_quant.text.normalize import normalize_asr_text
from asr_lm_quant.text.plain import build_vocabulary, count_words, prepare_plain, read_sentences
from asr_lm_quant.text.vocab import Vocabulary
from asr_lm_quant.textio import read_lines


@pytest.mark.parametrize("line, expected", [
    (" = Valkyria Chronicles III = ", []),
    (" = = = Music = = = ", []),
    (" It sold 1 @,@ 000 copies at 0 @.@ 7 % . ", [["it", "sold", "1000", "copies", "at", "0", "point", "7",
                                                   "percent"]]),
    (" a well @-@ known role @-@ playing game ", [["a", "well", "known", "role", "playing", "game"]]),
    (" The game 's theme , \" If You Wish \" ( <unk> ) . Next ? Yes ! ",
     [["the", "game's", "theme", "if", "you", "wish", "<unk>"], ["next"], ["yes"]]),
    ("They do n't like it 's odd & U.S. AC/DC", [["they", "don't", "like", "it's", "odd", "and", "u", "s",
                                                  "ac", "dc"]]),
    ("<unk> 's work . . .", [["<unk>", "s", "work"]]),
    ("   ", []),
])
def test_normalize_asr_text(line, expected):
    assert normalize_asr_text(line) == expected


def test_vocabulary_min_count_and_cap():
    counts = count_words([["b", "a", "b"], ["c", "a", "b", "<unk>"], ["d"]])
    v = build_vocabulary(counts)
    assert v.words == ["<s>", "<unk>", "b", "a", "c", "d"]  # by count, ties alphabetical
    assert build_vocabulary(counts, min_count=2).words == ["<s>", "<unk>", "b", "a"]
    assert build_vocabulary(counts, max_size=3).words == ["<s>", "<unk>", "b"]
    with pytest.raises(ValueError):
        build_vocabulary(counts, min_count=0)


def _write(path, text, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_prepare_plain_compressed_inputs_and_oov(tmp_path):
    train = _write(tmp_path / "train.txt.gz", "the cat sat\nthe dog sat\n\nthe cat ran <unk>\n", gzip.open)
    valid = _write(tmp_path / "valid.txt.xz", "the cow sat\n", lzma.open)
    test = _write(tmp_path / "test.txt", "a cat\n")
    out = tmp_path / "lm"
    stats = prepare_plain(train, valid, test, out, min_count=2)
    assert (out / "train.txt").read_text() == "the cat sat\nthe <unk> sat\nthe cat <unk> <unk>\n"
    assert (out / "valid.txt").read_text() == "the <unk> sat\n"
    assert (out / "test.txt").read_text() == "<unk> cat\n"
    assert Vocabulary.load(out / "words.txt").words == ["<s>", "<unk>", "the", "cat", "sat"]
    assert stats["valid"] == {"sentences": 1, "words": 3, "oov": 1, "unk_in_source": 0,
                              "oov_rate": 1 / 3, "unk_rate": 1 / 3}
    assert stats["train"]["oov"] == 2 and stats["train"]["unk_in_source"] == 1
    assert stats["train"]["unk_rate"] == pytest.approx(3 / 10)
    assert json.loads((out / "stats.json").read_text())["test"]["oov_rate"] == 0.5
    assert oct((out / "words.txt").stat().st_mode & 0o777) != oct(0o600)


def test_prepare_plain_given_vocabulary_and_keep_oov(tmp_path):
    t = _write(tmp_path / "t.txt", "a b c\nc d\n")
    words = _write(tmp_path / "words.txt", "<eps> 0\nc 1\na 2\n#0 3\n<s> 4\n</s> 5\n")  # Kaldi's table
    out = tmp_path / "lm"
    stats = prepare_plain(t, t, t, out, vocab=words, map_unk=False)
    assert (out / "train.txt").read_text() == "a b c\nc d\n"  # OOVs kept as they are
    assert Vocabulary.load(out / "words.txt").words == ["c", "a", "<s>", "</s>", "<unk>"]
    assert stats["train"]["oov"] == 2 and stats["vocab_file"] == str(words)
    bad = _write(tmp_path / "bad.txt", "<s> 0\n<unk> 0\n")
    with pytest.raises(InputError, match=r"bad.txt, line 2: id 0 already used on line 1"):
        prepare_plain(t, t, t, tmp_path / "lm2", vocab=bad)
    assert not (tmp_path / "lm2").exists()


def test_prepare_plain_refuses_existing_output_unless_overwrite(tmp_path):
    t = _write(tmp_path / "t.txt", "a b\n")
    out = tmp_path / "lm"
    prepare_plain(t, t, t, out)
    (out / "train.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_plain(t, t, t, out)
    assert (out / "train.txt").read_text() == "mine\n"
    prepare_plain(t, t, t, out, overwrite=True)
    assert (out / "train.txt").read_text() == "a b\n"


@pytest.mark.parametrize("case", ["missing", "empty", "bad_utf8", "empty_test", "bad_xz"])
def test_prepare_plain_bad_input_leaves_nothing(tmp_path, case):
    good = _write(tmp_path / "good.txt", "a b\nc\n")
    bad = tmp_path / "bad.txt"
    if case == "empty":
        bad.write_text("\n  \n")
        where = "bad.txt: no words"
    elif case == "bad_utf8":
        bad.write_bytes(b"fine line\nsecond \xff line\n")
        where = r"bad.txt, line 2, byte offset 17: not valid UTF-8"
    elif case == "empty_test":
        bad.write_text("")
        where = "bad.txt: no sentences"
    elif case == "bad_xz":
        bad = tmp_path / "bad.txt.xz"
        bad.write_bytes(b"not xz at all\n")
        where = "bad.txt.xz, line 1: cannot decompress"
    else:
        where = "bad.txt: file does not exist"
    out = tmp_path / "out"
    args = (bad, good, good) if case in ("empty", "bad_utf8", "missing", "bad_xz") else (good, good, bad)
    with pytest.raises(InputError, match=where):
        prepare_plain(*args, out)
    assert not out.exists()


def test_cli_plain_error_exit_code(tmp_path, capsys):
    rc = cli_main(["prepare-text", "plain", "--train", str(tmp_path / "no.txt"), "--valid", "x",
                   "--test", "y", "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "no.txt: file does not exist" in capsys.readouterr().err


def test_read_lines_reports_offsets(tmp_path):
    p = _write(tmp_path / "x.txt", "é\nb\n")
    assert list(read_lines(p)) == [(1, "é"), (2, "b")]


def test_wikitext2_asr_normalised_subset(shared_dir, tmp_path):
    # Real WikiText-2 (the first lines of each split), through the command line as the mini recipe runs it.
    src = shared_dir / "data" / "wikitext-2"
    parts = {}
    for split, n in (("train", 300), ("valid", 200), ("test", 200)):
        with lzma.open(src / f"{split}.txt.xz", "rt", encoding="utf-8") as f:
            head = "".join(next(f) for _ in range(n))
        parts[split] = _write(tmp_path / f"{split}.txt.xz", head, lzma.open)
    out = tmp_path / "lm"
    rc = cli_main(["prepare-text", "plain", "--train", str(parts["train"]), "--valid", str(parts["valid"]),
                   "--test", str(parts["test"]), "--normalize", "asr", "--min-count", "2", "--out", str(out)])
    assert rc == 0
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[2] == "released in january 2011 in japan it is the third game in the valkyria series"
    text = "\n".join(lines)
    for markup in ("@-@", "@,@", " = ", " , ", " 's"):
        assert markup not in text
    stats = json.loads((out / "stats.json").read_text())
    vocab = Vocabulary.load(out / "words.txt")
    assert all(w in vocab for line in lines for w in line.split())
    counts = count_words(line.split() for line in lines)
    assert all(counts[w] >= 2 for w in vocab.words[2:])  # --min-count 2
    assert stats["vocab_size"] == len(vocab)
    assert 0.05 < stats["valid"]["oov_rate"] < 0.5  # a 300-line vocabulary misses many valid words
    assert stats["valid"]["sentences"] > 300 and stats["test"]["sentences"] > 300


def test_wikitext2_vocabulary_matches_published_size(shared_dir):
    # WikiText-2 is published with 33,278 types counting the end-of-line symbol; ours has <s> for it.
    src = shared_dir / "data" / "wikitext-2"
    counts = count_words(read_sentences(src / "train.txt.xz"))
    assert sum(counts.values()) == 2_051_910
    vocab = build_vocabulary(counts)
    assert len(vocab) == 33_278
    assert vocab.words[:4] == ["<s>", "<unk>", "the", ","]
