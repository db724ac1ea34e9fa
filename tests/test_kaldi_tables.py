"""words.txt, data dirs, Kaldi n-best tables, the plain n-best format and the lattice commands."""

import json

import pytest

from asr_lm_quant import cli
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.datadir import DataDir, read_segments, read_text, write_table
from asr_lm_quant.kaldi.nbest import (NbestHyp, read_float_table, read_int_vector_table, read_kaldi_nbest_tables,
                                      split_nbest_key, write_float_table, write_int_vector_table,
                                      write_kaldi_nbest_tables, write_nbest)
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.nbest.read import read_nbest


@pytest.fixture(scope="module")
def lat_dir(repo_dir):
    """Our own Kaldi-format lattices and words.txt (tests/fixtures/kaldi/README.md)."""
    return repo_dir / "tests" / "fixtures" / "kaldi"


def test_symbol_table(tmp_path, lat_dir):
    words = SymbolTable.load(lat_dir / "words.txt")
    assert len(words) == 14 and words.id("<eps>") == 0 and words.word(9) == "that"
    t = SymbolTable.from_words(["b", "a", "<s>"])
    t.save(tmp_path / "w.txt")
    assert (tmp_path / "w.txt").read_text() == "<eps> 0\na 1\nb 2\n#0 3\n<s> 4\n</s> 5\n"
    assert SymbolTable.load(tmp_path / "w.txt").ids(["a", "zz"], oov="b") == [1, 2]
    (tmp_path / "dup.txt").write_text("<eps> 0\na 1\na 2\n")
    with pytest.raises(InputError, match=r"dup.txt, line 3: word 'a' already defined on line 2"):
        SymbolTable.load(tmp_path / "dup.txt")
    (tmp_path / "dupid.txt").write_text("<eps> 0\na 1\nb 1\n")
    with pytest.raises(InputError, match="line 3: id 1 already used"):
        SymbolTable.load(tmp_path / "dupid.txt")
    (tmp_path / "bad.txt").write_text("<eps> 0\na b 1\n")
    with pytest.raises(InputError, match="line 2"):
        SymbolTable.load(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="word 'zz'"):
        words.ids(["zz"], key="u-1")


def test_data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_table(d / "text", {"sw02001-A_000200-000300": "b c", "sw02001-A_000098-000150": ["a"],
                             "sw02001-B_000010-000020": ""})
    assert (d / "text").read_text().splitlines()[0] == "sw02001-A_000098-000150 a"
    write_table(d / "utt2spk", {u: u[:9] for u in read_text(d / "text")})
    write_table(d / "segments", {"sw02001-A_000098-000150": "sw02001-A 0.98 1.50",
                                 "sw02001-A_000200-000300": "sw02001-A 2.00 3.00",
                                 "sw02001-B_000010-000020": "sw02001-B 0.10 0.20"})
    write_table(d / "reco2file_and_channel", {"sw02001-A": "sw02001 A", "sw02001-B": "sw02001 B"})
    write_table(d / "wav.scp", {"sw02001-A": "sph2pipe -f wav -p -c 1 sw02001.sph |",
                                "sw02001-B": "sph2pipe -f wav -p -c 2 sw02001.sph |"})
    dd = DataDir.load(d)
    assert dd.text["sw02001-B_000010-000020"] == []
    assert dd.segments["sw02001-A_000098-000150"].start == 0.98
    dd.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "spk2utt").read_text().startswith(
        "sw02001-A sw02001-A_000098-000150 sw02001-A_000200-000300\n")
    assert DataDir.load(tmp_path / "copy").utt2spk == dd.utt2spk
    (d / "text").write_text("b x\na y\n")
    with pytest.raises(InputError, match=r"text, line 2, key 'a': not sorted"):
        read_text(d / "text")
    (d / "segments").write_text("u1 r1 2.0 1.0\n")
    with pytest.raises(InputError, match="bad segment times"):
        read_segments(d / "segments")


def test_kaldi_nbest_table_lines(tmp_path, lat_dir):
    write_int_vector_table(tmp_path / "words", {"utt-3": [4512, 87, 19021], "utt-4": []})
    assert (tmp_path / "words").read_text() == "utt-3 4512 87 19021 \nutt-4 \n"
    write_float_table(tmp_path / "acwt", {"utt-3": 123.4567, "utt-4": 1234567.0})
    assert (tmp_path / "acwt").read_text() == "utt-3 123.457 \nutt-4 1.23457e+06 \n"
    assert read_int_vector_table(tmp_path / "words") == {"utt-3": [4512, 87, 19021], "utt-4": []}
    assert read_float_table(tmp_path / "acwt")["utt-3"] == pytest.approx(123.457)
    assert split_nbest_key("sw02001-A_000098-001156-12") == ("sw02001-A_000098-001156", 12)
    with pytest.raises(ValueError):
        split_nbest_key("utt")
    words = SymbolTable.load(lat_dir / "words.txt")
    hyps = [NbestHyp("u1", 1, ["the", "cat"], 100.5, 20.25), NbestHyp("u1", 2, ["a"], 101.0, 19.0)]
    write_kaldi_nbest_tables(tmp_path / "nb", hyps, words)
    assert (tmp_path / "nb" / "words").read_text() == "u1-1 10 4 \nu1-2 3 \n"
    assert (tmp_path / "nb" / "lmwt.withlm").read_text() == "u1-1 20.25 \nu1-2 19 \n"
    back = read_kaldi_nbest_tables(tmp_path / "nb", words)
    assert [(h.utterance, h.rank, h.words) for h in back] == [("u1", 1, ["the", "cat"]), ("u1", 2, ["a"])]
    (tmp_path / "nb" / "acwt").write_text("u1-1 1 \n")
    with pytest.raises(InputError, match="key 'u1-2'"):
        read_kaldi_nbest_tables(tmp_path / "nb", words)


@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_plain_nbest_format(tmp_path, suffix):
    hyps = [NbestHyp("u1", 1, ["hello", "world"], 1234.5678901, 45.25), NbestHyp("u1", 2, [], 1300.0, 50.0),
            NbestHyp("u2", 1, ["x"], 1.0, 2.0)]
    p = tmp_path / f"nbest{suffix}"
    write_nbest(p, hyps)
    first = p.read_text().splitlines()[0]
    if suffix == ".tsv":
        assert first == "utterance\trank\ttext\tacoustic_cost\tlm_cost"
    else:
        assert json.loads(first) == {"utterance": "u1", "rank": 1, "text": "hello world",
                                     "acoustic_cost": 1234.5678901, "lm_cost": 45.25}
    assert read_nbest(p) == hyps
    p.write_text(p.read_text() + p.read_text().splitlines()[-2 if suffix == ".tsv" else 0] + "\n")
    with pytest.raises(InputError, match="not contiguous"):
        read_nbest(p)


def test_plain_nbest_errors(tmp_path):
    p = tmp_path / "n.tsv"
    p.write_text("utt\trank\n")
    with pytest.raises(InputError, match="line 1: header"):
        read_nbest(p)
    p.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\t0\ta\t1\t2\n")
    with pytest.raises(InputError, match="line 2, key 'u1': rank 0"):
        read_nbest(p)
    q = tmp_path / "n.jsonl"
    q.write_text('{"utterance": "u1"\n')
    with pytest.raises(InputError, match="line 1: bad JSON"):
        read_nbest(q)


def test_commands(tmp_path, lat_dir, capsys):
    src = f"ark:{lat_dir / 'lat.txt'}"
    assert cli.main(["lattice-copy", src, f"ark:| gzip -c > {tmp_path}/lat.1.gz"]) == 0
    assert cli.main(["lattice-copy", f"{tmp_path}/lat.1.gz", f"ark,t:{tmp_path}/back.txt"]) == 0
    assert (tmp_path / "back.txt").read_text() == (lat_dir / "lat.txt").read_text()  # byte for byte
    # An existing output is kept unless --overwrite is given.
    assert cli.main(["lattice-copy", src, f"ark,t:{tmp_path}/back.txt"]) == 1
    assert "back.txt: output already exists (give --overwrite" in capsys.readouterr().err
    assert cli.main(["lattice-copy", "--overwrite", src, f"ark,t:{tmp_path}/back.txt"]) == 0
    capsys.readouterr()
    assert cli.main(["lattice-info", f"{tmp_path}/lat.1.gz"]) == 0
    info = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (info["lattices"], info["states"], info["arcs"], info["frames"]) == (2, 12, 20, 40)
    assert cli.main(["lattice-to-nbest", "--n", "3", "--acoustic-scale", "0.1", src, f"ark,t:{tmp_path}/nb.txt",
                     "--words", str(lat_dir / "words.txt"), "--nbest", f"{tmp_path}/nb.tsv",
                     "--tables-dir", f"{tmp_path}/tables"]) == 0
    rows = read_nbest(tmp_path / "nb.tsv")
    assert [h.text for h in rows][0] == "the cat sat the mat" and [h.rank for h in rows] == [1, 2, 3, 1, 2, 3]
    assert rows[3].text == "hat sat"
    assert (tmp_path / "tables" / "words").read_text().splitlines()[0] == "spk1-utt1-1 10 4 8 10 6 "
    assert (tmp_path / "nb.txt").read_text().startswith("spk1-utt1-1 \n")
    (tmp_path / "bad.ark").write_bytes(b"k \xd6\x00\x00\x00")
    assert cli.main(["lattice-copy", f"ark:{tmp_path}/bad.ark", f"ark:{tmp_path}/out.ark"]) == 1
    assert "bad.ark, key 'k', byte offset 2" in capsys.readouterr().err
    assert not (tmp_path / "out.ark").exists()
