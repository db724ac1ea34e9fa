"""Switchboard LM text: from a Kaldi s5c directory and straight from the LDC layouts (fixtures in the real
formats under tests/fixtures/text/)."""

import gzip
import json
import shutil

import pytest

from asr_lm_quant.cli import main as cli_main
from asr_lm_quant.errors import InputError
from asr_lm_quant.text.kaldi_swbd import prepare_kaldi_swbd
from asr_lm_quant.text.ldc import prepare_ldc_swbd
from asr_lm_quant.text.swbd_layout import read_symbol_table
from asr_lm_quant.text.vocab import Vocabulary

FIX = __import__("pathlib").Path(__file__).parent / "fixtures" / "text"


@pytest.fixture()
def s5c(tmp_path):
    d = tmp_path / "s5c"
    shutil.copytree(FIX / "kaldi_s5c", d)
    fisher = d / "data/local/lm/fisher"
    with gzip.open(fisher / "text1.gz", "wb") as f:
        f.write((fisher / "text1").read_bytes())
    return d


def lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


SWBD_TRAIN = ["[noise] hello this is [laughter]", "yeah i i watch t. v.",
              "i work at i._b._m. and i._b._m.'s t._v.s",
              "well i think", "okay so what do you think", ""]
FISHER = [" hi i'm [laughter] it's cause of the thing", "well um-hum hum i think", "no hesitation   here", ""]


def test_kaldi_swbd_layout(s5c, tmp_path):
    out = tmp_path / "lm"
    stats = prepare_kaldi_swbd(s5c, out)
    # Switchboard:Fisher 3:1, each conversation in start-time order (both sides), ids cut, lower case;
    # hesitations mapped in the Fisher part only.
    assert lines(out / "train.txt") == SWBD_TRAIN + FISHER + SWBD_TRAIN + SWBD_TRAIN
    assert lines(out / "valid.txt") == ["mhm hmm", "hi um yeah"]
    assert lines(out / "test.txt") == ["everybody has a master's out here", "oh yeah", "uh-huh"]
    vocab = Vocabulary.load(out / "words.txt")
    assert vocab.words == ["!sil", "[laughter]", "[noise]", "<unk>", "hello", "i", "think", "well", "<s>", "</s>"]
    assert stats["train_parts"]["fisher"]["sentences"] == 4
    assert stats["train"]["sentences"] == 3 * 6 + 4
    assert stats["valid"] == {"sentences": 2, "words": 5, "oov": 5, "oov_rate": 1.0}
    assert stats["test"]["words"] == 9
    saved = json.loads((out / "stats.json").read_text())
    assert saved["vocab_size"] == 10 and saved["inputs"]["fisher"].endswith("text1.gz")


def test_kaldi_swbd_without_fisher_and_unk_added(s5c, tmp_path):
    words = s5c / "data/lang/words.txt"
    words.write_text("<eps> 0\nhello 1\n#0 2\n#1 3\n<s> 4\n</s> 5\n")
    out = tmp_path / "lm"
    prepare_kaldi_swbd(s5c, out, fisher="none")
    assert lines(out / "train.txt") == SWBD_TRAIN * 3
    assert Vocabulary.load(out / "words.txt").words == ["hello", "<s>", "</s>", "<unk>"]


def test_cli_kaldi_swbd_refuses_existing_output(s5c, tmp_path, capsys):
    out = tmp_path / "lm"
    assert cli_main(["prepare-text", "kaldi-swbd", str(s5c), "--out", str(out)]) == 0
    before = (out / "train.txt").read_bytes()
    assert cli_main(["prepare-text", "kaldi-swbd", str(s5c), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["prepare-text", "kaldi-swbd", str(s5c), "--out", str(out), "--overwrite",
                     "--fisher-text", "none"]) == 0
    assert (out / "train.txt").read_bytes() != before


@pytest.mark.parametrize("content, message", [
    ("<eps> 0\nhello 1\nhello 2\n", r"words.txt, line 3: word 'hello' already defined on line 2"),
    ("<eps> 0\nhello 1\nworld 1\n", r"words.txt, line 3: id 1 already used on line 2"),
    ("<eps> 0\nhello one\n", r"words.txt, line 2: id 'one' is not a non-negative integer"),
    ("<eps> 0\nhello -1\n", r"words.txt, line 2: id '-1' is not a non-negative integer"),
    ("<eps> 0\nhello 1 extra\n", r"words.txt, line 2: expected 'word id'"),
    ("", r"words.txt: symbol table is empty"),
])
def test_bad_words_txt(tmp_path, content, message):
    p = tmp_path / "words.txt"
    p.write_text(content)
    with pytest.raises(InputError, match=message):
        read_symbol_table(p)


def test_words_txt_with_a_gap_in_ids_is_read_in_id_order(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("<eps> 0\nworld 5\nhello 1\n")  # Kaldi allows gaps; the order is the ids'
    assert read_symbol_table(p) == ["<eps>", "hello", "world"]


@pytest.mark.parametrize("case", ["missing", "bad_id", "bad_utf8", "bad_fisher_gz", "bad_words"])
def test_kaldi_swbd_bad_input_leaves_no_output(s5c, tmp_path, case):
    if case == "missing":
        (s5c / "data/eval2000/text").unlink()
        message = r"eval2000/text: file does not exist"
    elif case == "bad_id":
        with open(s5c / "data/train_dev/text", "a") as f:
            f.write("sw02001A-0001 no proper id\n")
        message = r"train_dev/text, line 3: utterance id 'sw02001A-0001'"
    elif case == "bad_utf8":
        with open(s5c / "data/train_nodev/text", "ab") as f:
            f.write(b"sw02009-A_000000-000100 caf\xe9\n")
        message = r"train_nodev/text, line 7, byte offset \d+: not valid UTF-8"
    elif case == "bad_fisher_gz":
        data = (s5c / "data/local/lm/fisher/text1.gz").read_bytes()
        (s5c / "data/local/lm/fisher/text1.gz").write_bytes(data[:-12])  # truncated download
        message = r"text1.gz, line \d+: cannot decompress"
    else:
        (s5c / "data/lang/words.txt").write_text("<eps> 0\nhello 2\nworld 2\n")
        message = r"words.txt, line 3: id 2 already used on line 2"
    out = tmp_path / "lm"
    with pytest.raises(InputError, match=message):
        prepare_kaldi_swbd(s5c, out)
    assert not out.exists()


LDC = FIX / "ldc"


def ldc_prepare(out, **kw):
    args = dict(fisher_dirs=[LDC / "fe_03_p1_tran", LDC / "fe_03_p2_tran"], eval2000=LDC / "LDC2002T43",
                dev_utterances=3)
    args.update(kw)
    return prepare_ldc_swbd(LDC / "swb_ms98_transcriptions", out, **args)


LDC_SWBD_TRAIN = [
    "[noise] hello this is i b m calling [laughter]",        # sw2001B 0.00: letters not in the dictionary
    "yeah i i watch t. v. and a d._v._d. on the bus",        # acronyms from the dictionary; lone i, a kept
    "the dress- code is ex lem- ammn-t-",                     # [laughter-X]-, partial words, Kaldi's quirks
    "[vocalized-noise] [silence] uh-huh yes-",               # sw2001A 20.10: the 2nd of two [silence] stays
    "well i think the i._b._m. thing is -b- right",           # sw2005B 0.00 before sw2005A 2.00
    "okay so what do you think",
]
LDC_FISHER = [
    "hello",
    " hi i'm [laughter] it's cause of the mandatory thing",
    "well i think kay it's non stop um-hum hum [noise] [noise]",
    "",                                                        # <german ...> line: printed empty
    "-em um i don't know it's a- what york maybe [vocalized-noise]",
    "hi i'm mike from frisco",
    "um um okay",
    " bye [laughter]",                                        # second Fisher directory (fe_03_p2_tran)
]


def test_ldc_swbd_exact_text(tmp_path):
    out = tmp_path / "lm"
    stats = ldc_prepare(out)
    assert lines(out / "train.txt") == LDC_SWBD_TRAIN + LDC_FISHER + LDC_SWBD_TRAIN + LDC_SWBD_TRAIN
    # The first 3 utterances (in id order) are the dev set: [silence]-only and aside-only lines were dropped.
    assert lines(out / "valid.txt") == [
        "hi um yeah i'd like to talk about how you dress for work and and um",
        "honey [noise] sorry about that",
        "i work at i._b._m. and i._b._m.'s t._v.s are ab- -y it'n yuppiedom them",
    ]
    # eval2000 from the stm: comments and IGNORE_TIME_SEGMENT_ dropped, start-time order, lower case.
    assert lines(out / "test.txt") == ["everybody has a master's out here", "oh yeah",
                                       "he is a (%hesitation) police officer", "uh-huh (( i think )) mhm"]
    vocab = Vocabulary.load(out / "words.txt")
    assert vocab.words[:7] == ["!sil", "-b-", "-y", "<unk>", "[laughter]", "[noise]", "[vocalized-noise]"]
    assert vocab.words[-2:] == ["<s>", "</s>"]
    for w in ("i", "i.", "i._b._m.", "i._b._m.'s", "t._v.s", "d._v._d.", "it'n", "them", "yuppiedom", "a."):
        assert w in vocab
    for w in ("ibm", "tvs", "them_1", "[it'n/isn't]", "t"):
        assert w not in vocab
    assert stats["acronyms"] == 26 + 7  # the letters, and dvd i ibm ibm's t tvs v
    assert stats["train_parts"]["fisher"]["sentences"] == 8


def test_ldc_swbd_with_kaldi_words_and_cli(tmp_path):
    out = tmp_path / "lm"
    rc = cli_main(["prepare-text", "ldc-swbd", str(LDC / "swb_ms98_transcriptions"), "--fisher",
                   str(LDC / "fe_03_p1_tran"), "--eval2000",
                   str(LDC / "LDC2002T43/2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm"),
                   "--dev-utterances", "3", "--words", str(FIX / "kaldi_s5c/data/lang/words.txt"),
                   "--out", str(out)])
    assert rc == 0
    assert lines(out / "train.txt")[6:13] == LDC_FISHER[:7]
    assert len(lines(out / "train.txt")) == 6 * 3 + 7
    assert Vocabulary.load(out / "words.txt").words[0] == "!sil"


@pytest.mark.parametrize("case", ["bad_ms98_line", "no_stm", "bad_fisher_line", "too_few"])
def test_ldc_bad_input(tmp_path, case):
    src = tmp_path / "ldc"
    shutil.copytree(LDC, src)
    kw = {}
    if case == "bad_ms98_line":
        with open(src / "swb_ms98_transcriptions/20/2005/sw2005B-ms98-a-trans.text", "a") as f:
            f.write("sw2005B-ms98-a-0002 3.0 oops\n")
        message = r"sw2005B-ms98-a-trans.text, line 2: bad start/end time"
    elif case == "no_stm":
        (src / "LDC2002T43/2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm").unlink()
        message = r"LDC2002T43: cannot find the eval2000 references"
    elif case == "bad_fisher_line":
        with open(src / "fe_03_p2_tran/data/trans/058/fe_03_05851.txt", "a") as f:
            f.write("\nA: no times here\n")
        message = r"fe_03_05851.txt, line 5: expected 'start end side: words'"
    else:
        kw["dev_utterances"] = 9
        message = r"cannot hold out 9 of 9 utterances"
    out = tmp_path / "lm"
    with pytest.raises(InputError, match=message):
        prepare_ldc_swbd(src / "swb_ms98_transcriptions", out, eval2000=src / "LDC2002T43",
                         fisher_dirs=[src / "fe_03_p1_tran", src / "fe_03_p2_tran"], **{"dev_utterances": 3, **kw})
    assert not out.exists()


def test_failed_overwrite_keeps_previous_results(s5c, tmp_path):
    out = tmp_path / "lm"
    prepare_kaldi_swbd(s5c, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fisher = s5c / "data/local/lm/fisher/text1.gz"
    with gzip.open(fisher, "wb") as f:  # fails half-way through the streamed Fisher text
        f.write(b"fine line\n" * 1000 + b"bad \xff byte\n")
    with pytest.raises(InputError, match=r"text1.gz, line 1001, byte offset 10004: not valid UTF-8"):
        prepare_kaldi_swbd(s5c, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
