"""One line reader and one tokeniser: every text input of the package reads and splits lines the same way.

A word holding a no-break space (U+00A0) is one word in words.txt, in LM training text, in the n-gram LM,
in n-best hypotheses and in WER scoring alike (Kaldi splits on ASCII whitespace only), and a line that is
not UTF-8 is an error naming the file and the line, whichever reader meets it.
"""

from __future__ import annotations

import gzip
import io
import math
import sys

import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.datadir import read_table
from asr_lm_quant.kaldi.nbest import read_float_table
from asr_lm_quant.nbest.read import read_nbest
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.lm.data import encode_file
from asr_lm_quant.rescore.scorer import WordScorer
from asr_lm_quant.scoring.textfile import read_text
from asr_lm_quant.scoring.wer import score_texts
from asr_lm_quant.text.plain import read_sentences
from asr_lm_quant.text.vocab import Vocabulary
from asr_lm_quant.textio import read_lines, split_fields

NBSP_WORD = "new\u00a0york"          # one word, as Kaldi sees it
SENTENCE = f"i like {NBSP_WORD}\n"


def test_split_fields_splits_on_ascii_whitespace_only():
    assert split_fields(f" a\t{NBSP_WORD}\r\n b\x0bc\x0cd ") == ["a", NBSP_WORD, "b", "c", "d"]
    assert split_fields("a\u2009b\u3000c\x1cd") == ["a\u2009b\u3000c\x1cd"]   # str.split() would give 4
    assert split_fields("  \t ") == []


def test_a_no_break_space_word_is_one_word_in_words_txt_training_text_and_wer(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text(f"<s> 0\n<unk> 1\ni 2\nlike 3\n{NBSP_WORD} 4\n", encoding="utf-8")
    table = SymbolTable.load(words)
    assert table.word_to_id[NBSP_WORD] == 4
    vocab = Vocabulary.load(words)

    text = tmp_path / "train.txt"
    text.write_text(SENTENCE * 2, encoding="utf-8")
    enc = encode_file(text, vocab)
    assert (enc.words, enc.oov) == (6, 0)
    assert enc.sentences[0].tolist() == [2, 3, 4]
    assert list(read_sentences(text)) == [["i", "like", NBSP_WORD]] * 2

    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text(f"u1 {SENTENCE}", encoding="utf-8")
    hyp.write_text("u1 i like new york\n", encoding="utf-8")
    assert read_text(ref) == {"u1": ["i", "like", NBSP_WORD]}
    r = score_texts(read_text(ref), read_text(hyp))
    assert (r.ref_words, r.subs, r.ins, r.dels) == (3, 1, 1, 0)

    data = tmp_path / "text"
    data.write_text(f"u1 {SENTENCE}", encoding="utf-8")
    assert read_table(data) == {"u1": ["i", "like", NBSP_WORD]}


def test_a_no_break_space_word_is_one_word_in_nbest_lists_and_nn_scoring(tmp_path):
    tsv = tmp_path / "nbest.tsv"
    tsv.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\n"
                   f"u1\t1\t{SENTENCE.strip()}\t1.5\t2\n", encoding="utf-8")
    assert read_nbest(tsv)[0].words == ["i", "like", NBSP_WORD]

    class CountingScorer(WordScorer):
        def __init__(self):
            self.vocab = Vocabulary(["<s>", "<unk>", "i", "like", NBSP_WORD])

        def costs_from_ids(self, seqs, stats=None, per_token=None):
            self.seen = seqs
            return [0.0] * len(seqs)

    s = CountingScorer()
    s.costs([SENTENCE])
    assert s.seen == [[0, 2, 3, 4]] and (s.stats.words, s.stats.oov) == (3, 0)


def test_a_no_break_space_word_is_one_word_in_the_ngram_lm(tmp_path):
    from asr_lm_quant.ngram.arpa import ArpaLM
    from asr_lm_quant.ngram.train import train_arpa

    text = tmp_path / "train.txt"
    text.write_text(SENTENCE * 3 + "i like paris\n", encoding="utf-8")
    arpa = tmp_path / "lm.arpa"
    summary = train_arpa(text, arpa, order=2)
    assert summary["words"] == 12
    unigrams = arpa.read_text(encoding="utf-8").split("\\1-grams:")[1].split("\\2-grams:")[0]
    assert NBSP_WORD in [split_fields(line)[1] for line in unigrams.splitlines() if split_fields(line)]
    lm = ArpaLM(arpa)
    assert not lm.is_oov(NBSP_WORD)
    one = tmp_path / "one.txt"
    one.write_text(SENTENCE, encoding="utf-8")
    r = lm.perplexity_file(one)
    assert (r["words"], r["oov"]) == (3, 0)
    assert math.isclose(r["cost"], lm.sentence_cost(SENTENCE), rel_tol=1e-6)   # kenlm's float32 sums, in two orders


BAD = b"i like caf\xe9\n"


def _bad_file(tmp_path, name, before=b"", after=b""):
    p = tmp_path / name
    p.write_bytes(before + BAD + after)
    return p


@pytest.mark.parametrize("reader, name, before", [
    (lambda p: list(read_lines(p)), "corpus.txt", b"ok\nok\n"),
    (lambda p: encode_file(p, Vocabulary(["<s>", "<unk>", "i"])), "train.txt", b"i\ni\n"),
    (lambda p: list(read_sentences(p)), "plain.txt", b"i\ni\n"),
    (SymbolTable.load, "words.txt", b"<eps> 0\na 1\n"),
    (read_text, "text", b"u1 a\nu2 b\n"),
    (read_table, "utt2spk", b"u1 s\nu2 s\n"),
    (read_float_table, "lmwt.1", b"u-1 1.5\nu-2 2\n"),
    (read_nbest, "nbest.tsv", b"utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\t1\ta\t1\t2\n"),
])
def test_bad_utf8_names_the_file_and_the_line_in_every_reader(tmp_path, reader, name, before):
    p = _bad_file(tmp_path, name, before=before)
    with pytest.raises(InputError, match=rf"{name}, line 3, byte offset {len(before) + 10}: not valid UTF-8"):
        reader(p)


def test_bad_utf8_in_ngram_inputs_names_the_file_and_the_line(tmp_path):
    from asr_lm_quant.ngram.train import train_arpa

    p = _bad_file(tmp_path, "ngram.txt", before=b"a b\n")
    with pytest.raises(InputError, match=r"ngram.txt, line 2, byte offset 14: not valid UTF-8"):
        train_arpa(p, tmp_path / "lm.arpa", order=2)
    assert not (tmp_path / "lm.arpa").exists()


def test_read_lines_reads_gzip_standard_input_and_commands(tmp_path, monkeypatch):
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(SENTENCE.encode() + b"second\r\n"))
    assert list(read_lines(gz)) == [(1, SENTENCE.strip()), (2, "second\r")]

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a b\nc")))
    assert list(read_lines("-")) == [(1, "a b"), (2, "c")]

    assert list(read_lines(f"gunzip -c {gz} |")) == [(1, SENTENCE.strip()), (2, "second\r")]
    with pytest.raises(InputError, match=r"exit 3 \|: the command exited with status 3"):
        list(read_lines("exit 3 |"))
    with pytest.raises(InputError, match=r"line 2, byte offset 4: not valid UTF-8"):
        list(read_lines("printf 'ok\\nb\\xe9\\n' |"))


def test_read_lines_names_missing_and_broken_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.txt: file does not exist"):
        list(read_lines(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match=r"is a directory"):
        list(read_lines(tmp_path))
    text = "".join(f"w{i * 7919 % 10007}\n" for i in range(20000)).encode()
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(text)[:3000])
    with pytest.raises(InputError, match=r"cut.txt.gz, line \d+: cannot decompress"):
        list(read_lines(cut))


# Where a bare ``str.split()`` is not a tokenisation of text, or sits in a file being reworked elsewhere.
SPLIT_ALLOWED = {
    "lm/device.py": "the CPU flags of /proc/cpuinfo",
    "kaldi/archive.py": "an ASCII archive header",
    "scoring/sweep.py": "a list option, and a %WER line it formatted itself",
    "cli_args.py": "a list option",
    "rescore/nnscore.py": "naive_costs, the tests' reference scorer",
}


def test_the_package_reads_and_splits_text_the_one_way():
    """No module but textio iterates over a file opened as UTF-8 text (a reader of its own, with its own
    messages), and none splits with ``str.split()`` (Unicode spaces) but where SPLIT_ALLOWED says why."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "asr_lm_quant"
    found = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (rel != "textio.py" and isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
                    and "open(" in ast.unparse(node.iter) and "utf-8" in ast.unparse(node.iter)):
                found.append(f"{rel}:{node.lineno} reads lines itself (use textio.read_lines)")
            if (rel not in SPLIT_ALLOWED and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "split" and not node.args and not node.keywords):
                found.append(f"{rel}:{node.lineno} str.split() (use textio.split_fields)")
    assert found == [], found
