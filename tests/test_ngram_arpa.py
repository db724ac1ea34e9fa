import json
import lzma
import math

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.ngram import ArpaLM, train_arpa
from asr_lm_quant.text.vocab import Vocabulary

LN10 = math.log(10)


@pytest.fixture
def tiny(repo_dir):
    return ArpaLM(repo_dir / "tests/fixtures/ngram/tiny.arpa")


def test_sentence_costs_by_hand(tiny):
    assert tiny.order == 3
    # <s> a b </s>: trigram <s> a b, then back off (weight 0) to the bigram b </s>
    assert tiny.sentence_cost(["a", "b"]) == pytest.approx((0.2 + 0.1 + 0.3) * LN10, abs=1e-5)
    # <s> b: bow(<s>) + p(b); b a: bow(b) + p(a); a </s>
    assert tiny.sentence_cost("b a") == pytest.approx((0.5 + 0.9 + 0.2 + 0.7 + 0.6) * LN10, abs=1e-5)
    # an OOV is scored as <unk> after the back-off of its history
    assert tiny.sentence_cost(["a", "zz"]) == pytest.approx((0.2 + 0.3 + 1.0 + 0.5) * LN10, abs=1e-5)
    assert tiny.is_oov("zz") and not tiny.is_oov("a") and tiny.has_unk and not tiny.is_oov("<unk>")


def test_incremental_equals_sentence(tiny):
    for words in (["a", "b"], ["b", "a", "a"], ["a", "zz", "b"]):
        st = tiny.begin_state()
        total = 0.0
        for w in words:
            c, st = tiny.word_cost(st, w)
            total += c
        total += tiny.end_cost(st)
        assert total == pytest.approx(tiny.sentence_cost(words), abs=1e-5)
    st = tiny.begin_state()
    c1, _ = tiny.word_cost(st, "a")
    c2, _ = tiny.word_cost(st, "a")  # the state passed in is left unchanged
    assert c1 == c2 == pytest.approx(0.2 * LN10, abs=1e-6)


def test_perplexity_file(tiny, tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a b\n\nb a\n")
    r = tiny.perplexity_file(p)
    assert (r["words"], r["sentences"], r["oov"]) == (4, 2, 0)
    assert r["ppl"] == pytest.approx(10 ** ((0.6 + 2.9) / 6), rel=1e-5)
    # without end of sentence: a, b (0.2 + 0.1) and b, a (1.4 + 0.9)
    assert r["ppl_no_eos"] == pytest.approx(10 ** ((0.3 + 2.3) / 4), rel=1e-5)
    p.write_text("a zz\n")
    r = tiny.perplexity_file(p)
    assert r["oov"] == 1 and r["tokens_scored"] == 3
    r = tiny.perplexity_file(p, skip_oov=True)
    assert r["tokens_scored"] == 2
    assert r["ppl"] == pytest.approx(10 ** ((0.2 + 0.5) / 2), rel=1e-5)


def test_bad_input(tmp_path, tiny):
    with pytest.raises(InputError, match="does not exist"):
        ArpaLM(tmp_path / "nope.arpa")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a b\nb \xff a\n")
    with pytest.raises(InputError, match=r"bad.txt, line 2, byte offset 6"):
        tiny.perplexity_file(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no sentences"):
        tiny.perplexity_file(empty)
    out = tmp_path / "lm.arpa"
    with pytest.raises(InputError, match="empty"):
        train_arpa(empty, out)
    assert not out.exists()


def test_trained_lm_is_normalised(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("the cat sat\nthe dog sat on the mat\na cat and a dog\nthe cat sat on a dog\n")
    vocab = Vocabulary(["<s>", "<unk>", "the", "cat", "sat", "dog", "on", "a"])
    arpa = tmp_path / "lm.arpa"
    s = train_arpa(text, arpa, order=3, vocab=vocab)
    assert s["oov_mapped_to_unk"] == 2 and s["sentences"] == 4  # "mat" and "and"
    lm = ArpaLM(arpa)
    assert lm.has_unk and lm.order == 3
    targets = ["the", "cat", "sat", "dog", "on", "a", "<unk>", "</s>"]
    for history in ([], ["the"], ["the", "cat"], ["a", "dog"], ["dog", "sat"]):
        st = lm.begin_state()
        for w in history:
            _, st = lm.word_cost(st, w)
        total = sum(math.exp(-lm.word_cost(st, w)[0]) for w in targets)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_discount_and_cutoff_options(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("a b c\na b d\nb c d\na c\n" * 3 + "e f\n")
    a1, a2 = tmp_path / "1.arpa", tmp_path / "2.arpa"
    s1 = train_arpa(text, a1, order=3)
    s2 = train_arpa(text, a2, order=3, discounts=[0.5, 0.9], min_counts=[0, 0, 2])
    assert s2["discounts"] == [0.5, 0.9]
    assert s2["ngrams"][2] < s1["ngrams"][2]
    assert ArpaLM(a1).sentence_cost("a b c") != ArpaLM(a2).sentence_cost("a b c")
    with pytest.raises(ValueError):
        train_arpa(text, a1, order=3, discounts=[0.5])


def test_cli_on_wikitext(tmp_path, shared_dir, capsys):
    lines = lzma.open(shared_dir / "data/wikitext-2/train.txt.xz", "rt", encoding="utf-8").read().splitlines()
    train = tmp_path / "train.txt"
    valid = tmp_path / "valid.txt"
    train.write_text("\n".join(line.strip().lower() for line in lines[:400]) + "\n")
    valid.write_text("\n".join(line.strip().lower() for line in lines[400:450]) + "\n")
    arpa = tmp_path / "lm.arpa"
    assert main(["ngram-train", "--text", str(train), "--out", str(arpa), "--order", "3"]) == 0
    assert arpa.read_text().startswith("\\data\\\nngram 1=")
    capsys.readouterr()
    out_json = tmp_path / "ppl.json"
    assert main(["ngram-ppl", "--lm", str(arpa), "--text", str(valid), "--json", str(out_json)]) == 0
    r = json.loads(out_json.read_text())
    assert json.loads(capsys.readouterr().out) == r
    assert 50 < r["ppl"] < 3000 and r["ppl_no_eos"] > 0 and r["oov"] > 0
    lm = ArpaLM(arpa)
    sents = [line.split() for line in valid.read_text().splitlines() if line.split()]
    assert r["sentences"] == len(sents)
    assert r["ppl"] == pytest.approx(math.exp(sum(map(lm.sentence_cost, sents)) / r["tokens_scored"]), rel=1e-4)
    assert main(["ngram-ppl", "--lm", str(tmp_path / "x.arpa"), "--text", str(valid)]) == 1
