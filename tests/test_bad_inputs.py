"""A corpus of bad inputs, run through the commands a user runs.

Each case must end in one line on stderr that names the file (and the line, key or offset) and what is wrong,
a non-zero status, no traceback, no output written, and nothing that existed replaced without --overwrite.
"""

import gzip
import json
import os
import random
import stat
import threading
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import read_lattices, write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.nbest.read import read_nbest

REPO = Path(__file__).resolve().parents[1]
from conftest import TINY as tiny, fails  # noqa: E402

HEADER = "utterance\trank\ttext\tacoustic_cost\tlm_cost\n"


@pytest.fixture(scope="module")
def t(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("bad_inputs"))


def rescore(t, nbest, out, *extra):
    return ["rescore-nbest", "--old-lm", t["arpa"], "--lm-dir", t["lm"], "--nbest", nbest, "--out-nbest", out,
            *extra]


# --- n-best files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,content,expect", [
    ("bad_utf8.tsv", HEADER.encode() + b"u1\t1\tcaf\xe9\t1\t2\n", ["line 2", "not valid UTF-8"]),
    ("binary.jsonl", bytes(range(256)) * 4, ["binary.jsonl", "line 1"]),
    ("dup.tsv", (HEADER + "u1\t1\ta b\t1\t2\nu1\t1\ta c\t1\t2\n").encode(), ["line 3", "rank 1 appears twice"]),
    ("inf.tsv", (HEADER + "u1\t1\ta b\tinf\t2\n").encode(), ["line 2", "finite"]),
    ("ninf.tsv", (HEADER + "u1\t1\ta b\t1\t-inf\n").encode(), ["line 2", "finite"]),
    ("empty.tsv", b"", ["empty.tsv", "no header"]),
    ("float_rank.jsonl", b'{"utterance": "u1", "rank": 1.7, "text": "a", "acoustic_cost": 1, "lm_cost": 2}\n',
     ["line 1", "rank must be an integer"]),
    ("bool_cost.jsonl", b'{"utterance": "u1", "rank": 1, "text": "a", "acoustic_cost": true, "lm_cost": 2}\n',
     ["line 1", "acoustic_cost must be a number"]),
    ("split.tsv", (HEADER + "u1\t1\ta\t1\t2\nu2\t1\ta\t1\t2\nu1\t2\ta\t1\t2\n").encode(), ["line 4", "contiguous"]),
])
def test_bad_nbest_files(t, tmp_path, capsys, name, content, expect):
    p = tmp_path / name
    p.write_bytes(content)
    out = tmp_path / "out.tsv"
    fails(capsys, rescore(t, p, out), name, *expect)
    assert not out.exists()


def test_an_empty_split_passes_with_a_warning(t, tmp_path, caplog):
    """A job with no utterances: an n-best file with only its header is rescored to one with only its header."""
    p = tmp_path / "nbest.7.tsv"
    p.write_text(HEADER)
    out = tmp_path / "out.tsv"
    with caplog.at_level("WARNING"):
        assert main([str(a) for a in rescore(t, p, out, "--json", tmp_path / "s.json")]) == 0
    assert "nbest.7.tsv: no hypotheses" in caplog.text
    assert out.read_text() == HEADER
    assert json.loads((tmp_path / "s.json").read_text())["hypotheses"] == 0


def test_bad_options_fail_before_any_work(t, tmp_path, capsys):
    good = tmp_path / "good.tsv"
    good.write_text(HEADER + "u1\t1\ti think that\t1\t2\n")
    out = tmp_path / "out.tsv"
    fails(capsys, rescore(t, good, out, "--n", "0"), "--n 0")
    fails(capsys, rescore(t, good, out, "--token-budget", "0"), "--token-budget")
    fails(capsys, rescore(t, good, out, "--device", "cuda:7"), "--device cuda:7")
    fails(capsys, rescore(t, good, out, "--device", "tpu"), "--device 'tpu'")
    fails(capsys, rescore(t, good, out, "--weight", "1.5"), "--weight 1.5")
    fails(capsys, rescore(t, good, tmp_path / "a.tsv", "--weight", "0.5,0.8"), "{weight}")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fails(capsys, rescore(t, good, blocker / "out.tsv"), "is not a directory")
    assert not out.exists()


def test_existing_outputs_are_kept_without_overwrite(t, tmp_path, capsys):
    good = tmp_path / "good.tsv"
    good.write_text(HEADER + "u1\t1\ti think that\t1\t2\n")
    out = tmp_path / "out.tsv"
    out.write_text("mine\n")
    fails(capsys, rescore(t, good, out), str(out), "already exists", "--overwrite")
    assert out.read_text() == "mine\n"
    assert main([str(a) for a in rescore(t, good, out, "--overwrite")]) == 0
    assert [h.text for h in read_nbest(out)] == ["i think that"]


def test_outputs_onto_a_pipe_are_written_in_place(t, tmp_path):
    # As onto /dev/stdout: the pipe is written, never replaced by a renamed file.
    good = tmp_path / "good.tsv"
    good.write_text(HEADER + "u1\t1\ti think that\t1\t2\n")
    fifo = tmp_path / "fifo.tsv"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()))
    reader.start()
    assert main([str(a) for a in rescore(t, good, fifo)]) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert got and got[0].startswith(HEADER) and "i think that" in got[0]


def test_fuzzed_nbest_files_only_ever_give_input_errors(tmp_path):
    rng = random.Random(0)
    base = (HEADER + "u1\t1\ta b\t1.5\t2\nu1\t2\ta c\t1\t2\nu2\t1\t\t3\t4\n").encode()
    for i in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            pos = rng.randrange(len(data) + 1)
            if op < 0.4 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op < 0.7:
                data[pos:pos] = bytes([rng.choice(b"\t\n1-.e9ax\xff")])
            else:
                del data[pos:pos + rng.randint(1, 5)]
        p = tmp_path / f"f{i}{'.jsonl' if i % 3 == 0 else '.tsv'}"
        p.write_bytes(bytes(data))
        try:
            read_nbest(p)
        except InputError as e:
            assert str(p) in str(e)


# --- lattices -------------------------------------------------------------------------------------------
def test_text_lattice_key_then_newline_keeps_every_arc(tmp_path):
    # Kaldi reads this layout (key, newline, fields separated by spaces or tabs) and so do we, arc for arc.
    for sep in (" ", "\t"):
        p = tmp_path / "lat.txt"
        p.write_text(f"u1\n0{sep}1{sep}5{sep}1.5,2.5,3_3\n0{sep}1{sep}6{sep}2,3,3_4\n1{sep}0,0,\n\n"
                     f"u2\n0{sep}1{sep}7{sep}1,1,9\n1\n\n")
        lats = dict(read_lattices(f"ark:{p}"))
        assert [lats["u1"].num_arcs, lats["u2"].num_arcs] == [2, 1]
        assert sorted(lats["u1"].olabel.tolist()) == [5, 6]


@pytest.mark.parametrize("body,expect", [
    ("0\t1\t2147483648\t1,2,\n1\n\n", "outside 0..2^31-1"),
    ("0\t1\t5\t1,2,2147483648\n1\n\n", "outside 0..2^31-1"),
    ("0\t1\t5\t1e40,2,\n1\n\n", "outside the float32 range"),
])
def test_text_lattice_values_out_of_range(tmp_path, capsys, body, expect):
    p = tmp_path / "lat.txt"
    p.write_text("utt \n" + body)
    fails(capsys, ["lattice-copy", f"ark:{p}", f"ark:{tmp_path}/out.ark"], "lat.txt", "key 'utt'", expect)
    assert not (tmp_path / "out.ark").exists()


def test_cyclic_and_inconsistent_lattices_are_named(tmp_path, capsys):
    cyc = Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0, [1]), (1, 0, 4, 4, 1.0, 1.0, [1])], {1: (0.0, 0.0, [])})
    # State 2 is reached after 1 frame on one path and after 2 on the other.
    odd = Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0, [1]), (1, 2, 4, 4, 1.0, 1.0, [1]),
                             (0, 2, 5, 5, 1.0, 1.0, [1])], {2: (0.0, 0.0, [])})
    for key, lat in (("cyclic", cyc), ("times", odd)):
        p = tmp_path / f"{key}.ark"
        write_lattices(f"ark:{p}", [(key, lat)])
        fails(capsys, ["lattice-info", p], f"{key}.ark", f"key '{key}'", "not a valid decoder lattice")
        if key == "cyclic":
            fails(capsys, ["lattice-to-nbest", p, f"ark:{tmp_path}/nb.ark"], f"key '{key}'", "cycle")
            assert not (tmp_path / "nb.ark").exists()


def test_empty_archive_and_existing_output(tmp_path, capsys):
    empty = tmp_path / "empty.ark"
    empty.write_bytes(b"")
    fails(capsys, ["lattice-copy", f"ark:{empty}", f"ark:{tmp_path}/o.ark"], "empty.ark", "holds no lattices")
    assert not (tmp_path / "o.ark").exists()
    src = tmp_path / "one.ark"
    write_lattices(f"ark:{src}", [("u", Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0)], {1: (0.0, 0.0)}))])
    mine = tmp_path / "mine.ark"
    mine.write_bytes(b"precious")
    fails(capsys, ["lattice-copy", f"ark:{src}", f"ark:{mine}"], "mine.ark", "already exists")
    assert mine.read_bytes() == b"precious"


def test_bad_gzip_names_an_offset_past_the_start(tmp_path, capsys):
    lat = Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0)], {1: (0.0, 0.0)})
    p = tmp_path / "lat.1.gz"
    write_lattices(f"ark:| gzip -c > {p}", [(f"u{i}", lat) for i in range(3000)])
    data = p.read_bytes()
    p.write_bytes(data[:len(data) * 3 // 4])
    line = fails(capsys, ["lattice-info", p], "lat.1.gz")
    assert "byte offset" in line and "byte offset 0:" not in line


# --- scoring -------------------------------------------------------------------------------------------
def _decode_dir(tmp_path, words):
    d = tmp_path / "decode"
    d.mkdir()
    lat = Lattice.from_arcs([(0, 1, 1, 1, 1.0, 1.0, [1])], {1: (0.0, 0.0, [])})
    write_lattices(f"ark:| gzip -c > {d}/lat.1.gz", [("utt1", lat)])
    (d / "num_jobs").write_text("1\n")
    (tmp_path / "words.txt").write_text(words)
    return d


def test_score_kaldi_bad_words_and_mismatched_data(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("other1 hello\n")
    d = _decode_dir(tmp_path, "<eps> 0\nhello 1\nworld 1\n")
    fails(capsys, ["score-kaldi", data, tmp_path / "words.txt", d], "words.txt", "line 3", "id 1 already used")
    (tmp_path / "words.txt").write_text("<eps> 0\nhello 1\n")
    fails(capsys, ["score-kaldi", "--no-plot", data, tmp_path / "words.txt", d], "decode",
          "none of its 1 utterances is in the reference text")
    assert not list(d.glob("wer_*"))


# --- n-gram training, quantization, model files ----------------------------------------------------------
def test_ngram_train_keeps_an_existing_lm(t, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("a b c\nb c d\n")
    out = tmp_path / "lm.arpa"
    out.write_text("mine")
    fails(capsys, ["ngram-train", "--text", text, "--out", out], "lm.arpa", "already exists")
    assert out.read_text() == "mine"
    fails(capsys, ["ngram-train", "--text", text, "--out", tmp_path / "x.arpa", "--order", "9"], "--order 9")
    assert main(["ngram-train", "--text", str(text), "--out", str(out), "--overwrite"]) == 0
    assert "\\data\\" in out.read_text()


def test_quantize_refuses_early(t, tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("i think that\n")
    out = tmp_path / "q"
    for bits in ("0", "33"):
        fails(capsys, ["quantize", t["lm"], out, "--method", "ptq", "--bits", bits], f"precision {bits}")
    fails(capsys, ["quantize", t["lm"], out, "--method", "ste", "--bits", "4", "--train", text, "--valid",
                   tmp_path / "missing.txt"], "missing.txt", "does not exist")
    # An impossible budget is found before the search spends any time on it.
    fails(capsys, ["quantize", t["lm"], out, "--method", "search", "--budget-bits", "0.5", "--train", text],
          "below the smallest the candidate precisions")
    assert not out.exists()
    # A failed run leaves nothing behind that a re-run would build on.
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9\n")
    fails(capsys, ["quantize", t["lm"], out, "--method", "ptq", "--bits", "4", "--valid", bad], "bad.txt")
    assert not out.exists()


def test_edited_model_files_are_refused(t, tmp_path, capsys):
    import shutil
    q = tmp_path / "q"
    assert main(["quantize", str(t["lm"]), str(q), "--method", "ptq", "--bits", "4"]) == 0
    good = tmp_path / "good.tsv"
    good.write_text(HEADER + "u1\t1\ti think that\t1\t2\n")
    for d in (t["lm"], q):
        e = tmp_path / f"edited_{d.name}"
        shutil.copytree(d, e)
        cfg = json.loads((e / "config.json").read_text())
        cfg["model"]["activation"] = "relu" if cfg["model"].get("activation") != "relu" else "gelu"
        (e / "config.json").write_text(json.dumps(cfg))
        fails(capsys, rescore(t, good, tmp_path / "o.tsv", "--lm-dir", e), "config.json", "architecture differs")
        shutil.rmtree(e)
        shutil.copytree(d, e)
        words = (e / "words.txt").read_text().splitlines()
        words[2], words[3] = words[3].split()[0] + " 2", words[2].split()[0] + " 3"
        (e / "words.txt").write_text("\n".join(words) + "\n")
        fails(capsys, rescore(t, good, tmp_path / "o.tsv", "--lm-dir", e), "checksum mismatch")
        shutil.rmtree(e)


def test_gzip_text_inputs(tmp_path, capsys):
    # A truncated gzip n-gram text is named, with the line reached (words that do not compress away, so
    # the cut falls inside the stream).
    p = tmp_path / "text.txt.gz"
    text = "".join(f"w{i * 7919 % 10007} w{i * 104729 % 10007}\n" for i in range(5000)).encode()
    p.write_bytes(gzip.compress(text)[:2000])
    fails(capsys, ["ngram-train", "--text", p, "--out", tmp_path / "o.arpa"], "text.txt.gz", "line ",
          "cannot decompress")
    assert not (tmp_path / "o.arpa").exists()


def test_score_kaldi_keeps_an_earlier_scoring_without_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("utt1 hello\n")
    d = _decode_dir(tmp_path, "<eps> 0\nhello 1\n")
    argv = ["score-kaldi", "--no-plot", "--min-lmwt", "9", "--max-lmwt", "10", data, tmp_path / "words.txt", d]
    assert main([str(a) for a in argv]) == 0
    before = (d / "wer_10_0.0").read_text()
    fails(capsys, argv, "decode", "already scored", "--overwrite")
    assert (d / "wer_10_0.0").read_text() == before
    assert main([str(a) for a in argv] + ["--overwrite"]) == 0
