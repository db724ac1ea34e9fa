"""Corrupt lattice archives raise InputError naming file, key and byte offset; the reader never hangs."""

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import read_lattices, write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.kaldi.synthetic import random_compact_lattice

HDR = 4 + 4 + 6 + 4 + 16  # magic, "vector", "compactlattice44"


def _archive(tmp_path, n=2, seed=0, text=False):
    rng = np.random.default_rng(seed)
    items = [(f"utt{i}", random_compact_lattice(rng, num_frames=30, num_states=8)) for i in range(n)]
    p = tmp_path / ("a.txt" if text else "a.ark")
    write_lattices(f"ark{',t' if text else ''}:{p}", items)
    return p, items


def _read_all(path):
    return list(read_lattices(f"ark:{path}"))


def _err(path) -> InputError:
    with pytest.raises(InputError) as e:
        _read_all(path)
    return e.value


def test_truncated_everywhere(tmp_path):
    p, _ = _archive(tmp_path, n=1)
    data = p.read_bytes()
    for cut in sorted(set(np.linspace(6, len(data) - 1, 40).astype(int))):
        p.write_bytes(data[:cut])
        e = _err(p)
        assert e.path == str(p) and e.key == "utt0" and e.offset is not None and e.offset <= cut
        assert "truncated" in str(e) or "end of data" in str(e)


def test_bad_magic_unknown_arc_type_and_state_range(tmp_path):
    p, _ = _archive(tmp_path, n=1)
    good = p.read_bytes()
    p.write_bytes(good[:6] + b"\x00\x00\x00" + good[9:])
    e = _err(p)
    assert "magic" in str(e) and e.key == "utt0" and e.offset == 5
    p.write_bytes(good[:5 + 4 + 4 + 6] + struct.pack("<i", 8) + b"standard" + good[5 + HDR:])
    e = _err(p)
    assert "unknown arc type 'standard'" in str(e) and "utt0" in str(e) and "byte offset 19" in str(e)
    # Next state of the first arc of state 0 -> 999.
    lat = Lattice.from_arcs([(0, 1, 5, 5, 1.0, 2.0)], {1: (0.0, 0.0)})
    write_lattices(f"ark:{p}", [("k", lat)])
    data = bytearray(p.read_bytes())
    data[-24:-20] = struct.pack("<i", 999)
    p.write_bytes(bytes(data))
    assert "state id 999 out of range" in str(_err(p))


def _bounded_err(p):
    """The error for ``p``, checking that reading it allocated little (a count in a header is not trusted)."""
    tracemalloc.start()
    try:
        e = _err(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"reading a {p.stat().st_size}-byte archive allocated {peak >> 20} MiB"
    return e


def test_header_counts_do_not_drive_allocation(tmp_path):
    p, _ = _archive(tmp_path, n=1)
    good = p.read_bytes()
    off = 5 + HDR + 4 + 4 + 8 + 8  # 'utt0 ', version flags properties start -> nstates
    for nstates, msg in ((2**31 - 2, "truncated"), (2**40, "bad number of states"), (-5, "bad number")):
        p.write_bytes(good[:off] + struct.pack("<q", nstates) + good[off + 8:])
        assert msg in str(_bounded_err(p))
    # State 0's arc count (after its final weight: 2 floats + alignment count).
    arc_off = off + 16 + 12
    for narcs, msg in ((2**30, "truncated"), (2**40, "bad arc count")):
        p.write_bytes(good[:arc_off] + struct.pack("<q", narcs) + good[arc_off + 8:])
        assert msg in str(_bounded_err(p))
    p.write_bytes(good[:arc_off + 8 + 16] + struct.pack("<i", 2**30) + good[arc_off + 8 + 20:])
    assert "bad alignment length" in str(_err(p))


def test_nan_and_half_infinite_costs(tmp_path):
    from asr_lm_quant.kaldi.fst_binary import write_fst_binary
    from asr_lm_quant.kaldi.fst_text import write_fst_text
    p = tmp_path / "nan.ark"
    lat = Lattice.from_arcs([(0, 1, 5, 5, float("nan"), 2.0)], {1: (0.0, 0.0)})
    # Our writer refuses what no reader accepts; the low-level encoders make the corrupt files.
    with pytest.raises(InputError, match="cannot write this lattice: NaN"):
        write_lattices(f"ark:{p}", [("bad", lat)])
    assert not p.exists()
    p.write_bytes(b"bad " + write_fst_binary(lat))
    e = _err(p)
    assert "NaN" in str(e) and e.key == "bad" and e.offset == 4
    p.write_bytes(b"bad " + write_fst_text(lat).encode())
    assert "NaN" in str(_err(p))
    lat = Lattice.from_arcs([(0, 1, 5, 5, 1.0, 2.0)], {1: (float("inf"), 0.0)})
    with pytest.raises(InputError, match="one infinite cost"):
        write_lattices(f"ark:{p}", [("half", lat)])
    p.write_bytes(b"half " + write_fst_binary(lat))
    assert "one infinite cost" in str(_err(p))
    big = Lattice.from_arcs([(0, 1, 5, 5, 1e40, 2.0)], {1: (0.0, 0.0)})
    with pytest.raises(InputError, match="beyond the float32 range"):
        write_lattices(f"ark,t:{p}", [("big", big)])


@pytest.mark.parametrize("body,msg", [
    ("0\t1\t5\t1,2,3\n0\t99999999\t5\t1,2,\n1\n\n", "out of range"),
    ("0\t1\tx\t1,2,\n\n", "bad label"),
    ("0\t1\t5\t1,2,3,4\n\n", "bad weight"),
    ("0\t1\t5\t6\t1,2\n0\t2\t5\t1,2,\n\n", "mix"),
    ("0\t1\t2\t3\t4\t5\n\n", "bad line"),
    ("0\t1\t5\tInfinity,Infinity,\n1\n\n", "Zero"),
    ("a\t1\t5\n\n", "not an integer"),
])
def test_bad_text_lines(tmp_path, body, msg):
    p = tmp_path / "t.txt"
    p.write_text("first \n0\t1\t5\n1\n\nsecond \n" + body)
    e = _err(p)
    assert msg in str(e) and e.key == "second" and e.offset >= len("first \n0\t1\t5\n1\n\nsecond ")


def test_missing_word_id_names_table_and_key(repo_dir):
    words = SymbolTable.load(repo_dir / "tests" / "fixtures" / "kaldi" / "words.txt")
    with pytest.raises(InputError) as e:
        words.words([2, 5, 77], key="utt-3")
    assert "word id 77" in str(e.value) and "words.txt" in str(e.value) and e.value.key == "utt-3"


def test_bad_gzip(tmp_path):
    p, _ = _archive(tmp_path)
    gz = tmp_path / "lat.1.gz"
    data = gzip.compress(p.read_bytes())
    gz.write_bytes(data[:len(data) // 2])
    e = _err(gz)
    assert str(gz) in str(e)


def _parse_bounded(path):
    try:
        _read_all(path)
    except InputError as e:
        assert e.path is not None and e.offset is not None or "gzip" in str(e)


def test_fuzz_random_bytes(tmp_path):
    rng = np.random.default_rng(1)
    p = tmp_path / "r.ark"
    for i in range(150):
        n = int(rng.integers(1, 400))
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if i % 3 == 0:
            data = b"key " + data
        if i % 5 == 0:
            data = b"key " + bytes.fromhex("d6fdb27e") + data
        p.write_bytes(data)
        _parse_bounded(p)


@pytest.mark.parametrize("text", [False, True])
def test_fuzz_mutated_archives(tmp_path, text):
    src, _ = _archive(tmp_path, n=2, seed=4, text=text)
    good = src.read_bytes()
    rng = np.random.default_rng(7 + text)
    p = tmp_path / "m.ark"
    for _ in range(150):
        data = bytearray(good)
        op = rng.integers(0, 4)
        if op == 0:  # flip bytes
            for j in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                data[j] = int(rng.integers(0, 256))
        elif op == 1:  # truncate
            data = data[:int(rng.integers(1, len(data)))]
        elif op == 2:  # overwrite an int field with a large value
            j = int(rng.integers(0, len(data) - 8))
            data[j:j + 8] = struct.pack("<q", int(rng.choice([2**31 - 1, 2**62, -1, 2**20])))
        else:  # insert junk
            j = int(rng.integers(0, len(data)))
            data[j:j] = rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
        p.write_bytes(bytes(data))
        _parse_bounded(p)
        gz = tmp_path / "m.gz"
        gz.write_bytes(gzip.compress(bytes(data)))
        _parse_bounded(gz)
