"""What a Kaldi user's set-up brings: lang dirs with <UNK>, G.fst where an ARPA is expected, Kaldi's runners
missing from PATH, globbed pipe rspecifiers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.symbols import SymbolTable, unknown_word
from asr_lm_quant.errors import InputError

REPO = Path(__file__).resolve().parents[1]
OPENFST_MAGIC = b"\xd6\xfd\xb2\x7e"


@pytest.fixture
def lang(tmp_path):
    """A Kaldi lang dir whose unknown-word symbol is <UNK> (as LibriSpeech's)."""
    d = tmp_path / "data" / "lang"
    d.mkdir(parents=True)
    SymbolTable.from_words(["<UNK>", "the", "cat", "sat", "dog"]).save(d / "words.txt")
    (d / "oov.txt").write_text("<UNK>\n")
    (tmp_path / "train.txt").write_text("the cat sat\nthe dog sat\nthe bird sat\n")
    return d


def test_unknown_word_from_oov_txt_option_or_default(lang, tmp_path):
    assert unknown_word(lang / "words.txt") == "<UNK>"
    assert unknown_word(lang / "words.txt", "the") == "the"
    with pytest.raises(InputError, match="has no unknown-word symbol '<foo>'"):
        unknown_word(lang / "words.txt", "<foo>")
    other = tmp_path / "graph"
    other.mkdir()
    (other / "words.txt").write_bytes((lang / "words.txt").read_bytes())
    assert unknown_word(other / "words.txt") == "<unk>"  # no oov.txt: the default
    (lang / "oov.txt").write_text("<UNK> extra\n")
    with pytest.raises(InputError, match="oov.txt: expected one word"):
        unknown_word(lang / "words.txt")


def test_ngram_train_with_a_kaldi_lang_dir_maps_oovs_to_its_unk(lang, tmp_path, capsys):
    out = tmp_path / "lm.arpa"
    assert main(["ngram-train", "--text", str(tmp_path / "train.txt"), "--vocab", str(lang / "words.txt"),
                 "--out", str(out), "--order", "2"]) == 0
    unigrams = {line.split()[1] for line in out.read_text().split("\\1-grams:")[1].split("\\2-grams:")[0]
                .splitlines() if line.strip()}
    assert "<UNK>" in unigrams and "bird" not in unigrams and "<unk>" not in unigrams
    assert '"oov_mapped_to_unk": 1' in capsys.readouterr().out


def test_prepare_text_plain_with_a_kaldi_lang_dir(lang, tmp_path):
    (tmp_path / "valid.txt").write_text("the <UNK> sat\n")
    (tmp_path / "test.txt").write_text("a cat sat\n")
    out = tmp_path / "lm"
    assert main(["prepare-text", "plain", "--train", str(tmp_path / "train.txt"), "--valid",
                 str(tmp_path / "valid.txt"), "--test", str(tmp_path / "test.txt"), "--vocab",
                 str(lang / "words.txt"), "--out", str(out)]) == 0
    words = [line.split()[0] for line in (out / "words.txt").read_text().splitlines()]
    assert "<unk>" in words and "<UNK>" not in words  # Kaldi's symbol became ours, not an ordinary word
    assert (out / "train.txt").read_text().splitlines()[2] == "the <unk> sat"
    assert (out / "valid.txt").read_text() == "the <unk> sat\n"


def test_corrupt_g_fst_or_g_carpa_as_the_old_lm(tmp_path, capsys):
    # G.fst and G.carpa are old LMs too (tests/test_kaldi_old_lm.py); corrupt ones stop before the model loads.
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\n<s> 2\n</s> 3\n")
    g = tmp_path / "G.fst"
    g.write_bytes(OPENFST_MAGIC + bytes(range(256)) * 4)
    carpa = tmp_path / "G.carpa"
    carpa.write_bytes(b"\0B<ConstArpaLm> " + bytes(range(256)))
    (tmp_path / "x.tsv").write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\t1\ta\t1.0\t2.0\n")
    for path, what in ((g, "bad fst type length"), (carpa, "expected the token <LmInfo> here")):
        rc = main(["rescore-nbest", "--old-lm", str(path), "--lm-dir", str(tmp_path), "--nbest",
                   str(tmp_path / "x.tsv"), "--out-nbest", str(tmp_path / "o.tsv")])
        err = capsys.readouterr().err
        assert rc == 1 and str(path) in err and what in err and "Traceback" not in err
    (tmp_path / "other.bin").write_bytes(b"\0BFM " + bytes(64))
    rc = main(["rescore-nbest", "--old-lm", str(tmp_path / "other.bin"), "--lm-dir", str(tmp_path), "--nbest",
               str(tmp_path / "x.tsv"), "--out-nbest", str(tmp_path / "o.tsv")])
    assert rc == 1 and "not a ConstArpaLm (G.carpa): not an n-gram LM" in capsys.readouterr().err


def _env(path):
    # PYTHONPATH kept: the steps run this checkout's code, not another copy installed on PATH.
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def test_step_script_checks_the_old_lm_once_before_any_job(tmp_path):
    g = tmp_path / "G.fst"
    g.write_bytes(OPENFST_MAGIC + bytes(64))
    lm, dec = tmp_path / "lm", tmp_path / "decode"
    lm.mkdir(), dec.mkdir()
    (lm / "config.json").write_text("{}")
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\n")
    (dec / "num_jobs").write_text("1\n")
    (dec / "lat.1.gz").write_bytes(b"")
    p = subprocess.run([str(REPO / "steps/lmrescore_lattice.sh"), "--words", str(tmp_path / "words.txt"), str(g),
                        str(lm), str(tmp_path), str(dec), str(tmp_path / "out")], capture_output=True, text=True,
                       env=_env(f"{Path(sys.executable).parent}:/usr/bin:/bin"))
    assert p.returncode == 1 and "bad old LM" in p.stderr and f"{g}" in p.stderr, p.stderr
    assert not (tmp_path / "out" / "log").exists() or not list((tmp_path / "out" / "log").iterdir())


def test_steps_fall_back_to_their_own_run_pl_and_name_a_missing_runner(tmp_path):
    # Kaldi's utils/ is not on PATH: run.pl is steps/run.pl, and the log the step names exists.
    (tmp_path / "conf.json").write_text("{ not json")
    text = tmp_path / "text"
    text.mkdir()
    for f in ("train.txt", "valid.txt", "words.txt"):
        (text / f).write_text("x\n")
    env = _env(f"{Path(sys.executable).parent}:/usr/bin:/bin")
    p = subprocess.run([str(REPO / "steps/train_lm.sh"), str(tmp_path / "conf.json"), str(text), str(tmp_path / "lm")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 1 and f"see {tmp_path}/lm/log/train.log" in p.stderr
    assert "not valid JSON" in (tmp_path / "lm/log/train.log").read_text()
    p = subprocess.run([str(REPO / "steps/train_lm.sh"), "--cmd", "queue.pl --mem 4G", str(tmp_path / "conf.json"),
                        str(text), str(tmp_path / "lm2")], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "job runner 'queue.pl' (--cmd) not found" in p.stderr
    assert not (tmp_path / "lm2").exists()
