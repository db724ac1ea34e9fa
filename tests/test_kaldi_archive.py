"""Lattice archives: the real Kaldi text lattice, exact binary/text forms, round trips, streaming, job sets."""

import gzip
import struct

import numpy as np
import pytest

from asr_lm_quant.kaldi import algorithms as alg
from asr_lm_quant.kaldi.archive import (LatticeWriter, decode_dir_jobs, read_decode_dir, read_lattices,
                                        write_lattices)
from asr_lm_quant.kaldi.fst_binary import compute_properties
from asr_lm_quant.kaldi.algorithms import lattice_to_compact
from asr_lm_quant.kaldi.lattice import Lattice, compact_to_lattice
from asr_lm_quant.kaldi.nbest import nbest_paths, path_to_lattice
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.kaldi.synthetic import random_compact_lattice
from asr_lm_quant.errors import InputError


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "kaldi-lattice-text"


@pytest.fixture(scope="module")
def real_lattice(fixture_dir):
    (key, lat), = list(read_lattices(f"ark:{fixture_dir / 'lattice.lat'}"))
    return key, lat


def _random_lattices(n=4, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [(f"utt{i}", random_compact_lattice(rng, num_frames=40 + 10 * i, num_states=12 + i, **kw))
            for i in range(n)]


def test_real_text_lattice_reads(real_lattice, fixture_dir):
    key, lat = real_lattice
    assert key == "utterance"
    assert lat.compact and lat.num_states == 23 and lat.num_arcs == 37 and lat.start == 0
    assert np.flatnonzero(lat.is_final()).tolist() == [21, 22]
    assert lat.final_graph[21] == pytest.approx(13.83) and lat.final_acoustic[22] == pytest.approx(4651.0)
    i = np.flatnonzero((lat.src == 4) & (lat.dst == 14))[0]
    assert (lat.olabel[i], lat.graph[i], lat.acoustic[i]) == (12, pytest.approx(27.96), pytest.approx(1326.4))
    words = SymbolTable.load(fixture_dir / "words.txt")
    best = alg.best_path(lat)
    assert words.words(best.words) == ["it", "didn't", "elaborate"]
    assert best.graph_cost == pytest.approx(0 + 62.05 + 78.74 + 62.72 + 13.83, abs=1e-3)
    assert best.acoustic_cost == pytest.approx(3829.6 + 1450.07 + 4222.7 + 5847.54 + 4651.0, abs=1e-2)


def test_text_output_is_kaldis_form(real_lattice, fixture_dir, tmp_path):
    key, lat = real_lattice
    out = tmp_path / "lat.txt"
    write_lattices(f"ark,t:{out}", [(key, lat)])
    text = out.read_text()
    # Key, one space and a newline; tab-separated printer lines; C++ float formatting; blank line at the end.
    assert text.startswith("utterance \n0\t1\t0\t0,1432.27,\n0\t2\t0\t0,1500.93,\n")
    assert "\n4\t6\t4\t69.71,798.3,\n" in text
    assert text.endswith("\n21\t13.83,4651,\n22\t13.83,4651,\n\n")
    src_lines = (fixture_dir / "lattice.lat").read_text().splitlines()[1:]
    got_lines = text.splitlines()[1:-1]
    assert len(got_lines) == len(src_lines)
    for a, b in zip(src_lines, got_lines):
        fa, fb = a.split(), b.split("\t")
        assert fa[:-1] == fb[:-1]
        assert [float(x) for x in fa[-1].split(",")[:2]] == [float(x) for x in fb[-1].split(",")[:2]]


def test_text_weight_one_and_dead_state_lines():
    lat = Lattice.from_arcs([(0, 1, 3, 3, 0.0, 0.0), (0, 2, 4, 4, 1.0, 2.0, [5, 6]), (1, 3, 2, 2, 0.5, 0.0)],
                            {3: (0.0, 0.0), 2: (1e-7, 12345678.0, [9])})
    from asr_lm_quant.kaldi.fst_text import write_fst_text
    assert write_fst_text(lat) == ("\n0\t1\t3\n0\t2\t4\t1,2,5_6\n1\t3\t2\t0.5,0,\n"
                                   "2\t1e-07,1.23457e+07,9\n3\n\n")
    dead = Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0)], {0: (2.0, 0.0)})
    assert write_fst_text(dead) == "\n0\t1\t3\t1,1,\n0\t2,0,\n1\tInfinity,Infinity,\n\n"


def test_binary_bytes_exact(tmp_path):
    lat = Lattice.from_arcs([(0, 1, 5, 5, 1.5, 2.25, [7, 8])], {1: (0.5, 0.0)})
    out = tmp_path / "one.ark"
    write_lattices(f"ark:{out}", [("utt1", lat)])
    inf = float("inf")
    props = (0x1 | 0x2 | 0x10000 | 0x40000 | 0x100000 | 0x800000 | 0x2000000 | 0x8000000 | 0x10000000
             | 0x40000000 | 0x100000000 | 0x800000000 | 0x2000000000 | 0x4000000000 | 0x10000000000
             | 0x40000000000 | 0x100000000000 | 0x800000000000)
    expected = (b"utt1 " + bytes.fromhex("d6fdb27e") + struct.pack("<i", 6) + b"vector"
                + struct.pack("<i", 16) + b"compactlattice44" + struct.pack("<iiQqqq", 2, 0, props, 0, 2, 0)
                + struct.pack("<ffiq", inf, inf, 0, 1) + struct.pack("<iiffi", 5, 5, 1.5, 2.25, 2)
                + struct.pack("<iii", 7, 8, 1) + struct.pack("<ffiq", 0.5, 0.0, 0, 0))
    assert out.read_bytes() == expected
    assert compute_properties(lat) == props


def test_small_and_large_compact_layouts_agree(monkeypatch):
    """Small CompactLattices are laid out by a plain loop, larger ones by array arithmetic: same bytes."""
    from asr_lm_quant.kaldi import fst_binary
    lats = [lat for _, lat in _random_lattices(n=6, seed=3)]
    lats += [path_to_lattice(lats[0], p) for p in nbest_paths(lats[0], 5)]
    lats.append(Lattice.from_arcs([(0, 1, 5, 5, 1.5, 2.25, [7, 8]), (0, 2, 0, 0, 0.0, 0.0), (1, 2, 3, 3, -1.0, 0.5)],
                                  {2: (0.5, 0.0, [4, 4, 4]), 1: (1.0, 2.0, [9])}))
    assert all(lat.num_arcs + lat.num_states <= fst_binary._SMALL for lat in lats)
    small = [fst_binary.write_fst_binary(lat) for lat in lats]
    monkeypatch.setattr(fst_binary, "_SMALL", -1)
    assert [fst_binary.write_fst_binary(lat) for lat in lats] == small


def test_lattice4_binary_layout(tmp_path):
    lat = Lattice.from_arcs([(0, 1, 11, 5, 1.0, 2.0), (1, 2, 12, 0, 0.0, 3.0)], {2: (0.25, 0.0)},
                            compact=False)
    out = tmp_path / "l4.ark"
    write_lattices(f"ark:{out}", [("u", lat)])
    data = out.read_bytes()
    assert data[2 + 4 + 4 + 6 + 4:2 + 4 + 4 + 6 + 4 + 8] == b"lattice4"
    body = data[2 + 4 + 10 + 12 + 4 + 4 + 8 + 24:]
    assert body == (struct.pack("<ffq", float("inf"), float("inf"), 1) + struct.pack("<iiffi", 11, 5, 1, 2, 1)
                    + struct.pack("<ffq", float("inf"), float("inf"), 1) + struct.pack("<iiffi", 12, 0, 0, 3, 2)
                    + struct.pack("<ffq", 0.25, 0, 0))
    (k, back), = list(read_lattices(f"ark:{out}"))
    assert not back.compact and back.equals(lat)


def test_properties_from_file_are_kept(tmp_path):
    lat = _random_lattices(1)[0][1]
    a = tmp_path / "a.ark"
    write_lattices(f"ark:{a}", [("u", lat)])
    data = bytearray(a.read_bytes())
    at = 2 + 4 + 10 + 20 + 8  # "u " magic "vector" "compactlattice44" version flags
    data[at:at + 8] = struct.pack("<Q", 0x123456789 | 3)
    a.write_bytes(bytes(data))
    b = tmp_path / "b.ark"
    write_lattices(f"ark:{b}", read_lattices(f"ark:{a}"))
    assert b.read_bytes() == bytes(data)


@pytest.mark.parametrize("wspec,rspec", [
    ("ark:{d}/x.ark", "ark:{d}/x.ark"),
    ("ark,t:{d}/x.txt", "ark,t:{d}/x.txt"),
    ("ark:{d}/lat.1.gz", "{d}/lat.1.gz"),
    ("ark:| gzip -c > {d}/lat.2.gz", "ark:gunzip -c {d}/lat.2.gz|"),
    ("ark,t:| gzip -c > {d}/t.gz", "ark,s,cs:gunzip -c {d}/t.gz | cat |"),
    ("ark,scp:{d}/x.ark,{d}/x.scp", "scp:{d}/x.scp"),
    ("ark,t,scp:{d}/y.ark,{d}/y.scp", "scp:{d}/y.scp"),
])
def test_round_trips(tmp_path, real_lattice, wspec, rspec):
    items = _random_lattices() + [real_lattice, ("empty", Lattice.empty())]
    d = str(tmp_path)
    assert write_lattices(wspec.format(d=d), items) == len(items)
    got = list(read_lattices(rspec.format(d=d)))
    assert [k for k, _ in got] == [k for k, _ in items]
    rtol = 1e-5 if ",t" in wspec else 0.0  # Kaldi's text form keeps 6 significant digits
    for (_, a), (_, b) in zip(items, got):
        assert a.equals(b, rtol=rtol)


def test_text_binary_text_is_stable(tmp_path, real_lattice):
    items = _random_lattices(3, seed=5) + [real_lattice]
    write_lattices(f"ark,t:{tmp_path}/a.txt", items)
    write_lattices(f"ark:{tmp_path}/b.ark", read_lattices(f"ark:{tmp_path}/a.txt"))
    write_lattices(f"ark,t:{tmp_path}/c.txt", read_lattices(f"ark:{tmp_path}/b.ark"))
    assert (tmp_path / "a.txt").read_bytes() == (tmp_path / "c.txt").read_bytes()
    write_lattices(f"ark:{tmp_path}/d.ark", read_lattices(f"ark:{tmp_path}/c.txt"))
    # Properties are recomputed from text and kept from binary; the rest is byte-identical.
    assert (tmp_path / "b.ark").read_bytes() == (tmp_path / "d.ark").read_bytes()


def test_mixed_archive_and_lattice_kind(tmp_path):
    items = _random_lattices(2, seed=3)
    ark = tmp_path / "mixed.ark"
    with open(ark, "wb") as f:
        for i, (k, lat) in enumerate(items):
            w = tmp_path / f"part{i}"
            write_lattices(f"ark{',t' if i else ''}:{w}", [(k, lat)])
            f.write(w.read_bytes())
    got = list(read_lattices(f"ark:{ark}"))
    assert all(a.equals(b, rtol=1e-5) for (_, a), (_, b) in zip(items, got))
    as_lat = list(read_lattices(f"ark:{ark}", kind="lattice"))
    assert all(not lat.compact for _, lat in as_lat)
    write_lattices(f"ark,t:{tmp_path}/l4.txt", as_lat)
    first = (tmp_path / "l4.txt").read_text().splitlines()[1].split("\t")
    assert len(first) == 5  # src dst transition-id word weight
    back = list(read_lattices(f"ark:{tmp_path}/l4.txt", kind="compact"))
    for (_, a), (_, b) in zip(items, back):
        pa, pb = nbest_paths(a, 30, 0.1), nbest_paths(b, 30, 0.1)
        assert [p.words for p in pa] == [p.words for p in pb]
        assert [p.alignment.tolist() for p in pa] == [p.alignment.tolist() for p in pb]
        assert np.allclose([p.graph_cost for p in pa], [p.graph_cost for p in pb], atol=1e-3)


def test_conversion_keeps_paths():
    rng = np.random.default_rng(11)
    for _ in range(5):
        clat = random_compact_lattice(rng, num_frames=30, num_states=10, eps_prob=0.3)
        lat4 = compact_to_lattice(clat)
        assert alg.num_frames(lat4) == alg.num_frames(clat) == 30
        back = lattice_to_compact(lat4)
        for x in (lat4, back):
            pa, pb = nbest_paths(clat, 50, 0.1, unique=False), nbest_paths(x, 50, 0.1, unique=False)
            assert sorted((p.words, p.alignment.tolist()) for p in pa) == \
                sorted((p.words, p.alignment.tolist()) for p in pb)
        assert back.num_arcs == clat.num_arcs


def test_reader_is_lazy(tmp_path):
    items = _random_lattices(3)
    ark = tmp_path / "x.ark"
    write_lattices(f"ark:{ark}", items)
    ark.write_bytes(ark.read_bytes() + b"broken \xd6\xfd")
    gen = read_lattices(f"ark:{ark}")
    assert next(gen)[0] == "utt0"  # the bad tail is not read yet
    with pytest.raises(InputError, match="broken"):
        list(gen)


def test_writer_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "lat.1.gz"
    with pytest.raises(RuntimeError):
        with LatticeWriter(f"ark:{out}") as w:
            w.write("a", _random_lattices(1)[0][1])
            raise RuntimeError("stop")
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(ValueError):
        with LatticeWriter(f"ark:{out}") as w:
            w.write("bad key", Lattice.empty())


def test_decode_dir_jobs(tmp_path):
    items = _random_lattices(4)
    (tmp_path / "num_jobs").write_text("2\n")
    write_lattices(f"ark:{tmp_path}/lat.1.gz", items[:2])
    write_lattices(f"ark:| gzip -c > {tmp_path}/lat.2.gz", items[2:])
    assert gzip.open(tmp_path / "lat.2.gz").read(5) == b"utt2 "
    assert [p.name for p in decode_dir_jobs(tmp_path)] == ["lat.1.gz", "lat.2.gz"]
    assert [k for k, _ in read_decode_dir(tmp_path)] == ["utt0", "utt1", "utt2", "utt3"]
    (tmp_path / "num_jobs").write_text("3\n")
    with pytest.raises(InputError, match="lat.3.gz"):
        decode_dir_jobs(tmp_path)
    (tmp_path / "num_jobs").unlink()
    with pytest.raises(InputError, match="num_jobs"):
        decode_dir_jobs(tmp_path)


def test_properties_fast_path_agrees_with_graph_search():
    # Top-sorted lattices take a one-pass reachability; the same lattice renumbered (not top-sorted) takes
    # the sparse-graph search. Both must give the same accessibility bits.
    from asr_lm_quant.kaldi import fst_binary as fb
    from asr_lm_quant.kaldi.synthetic import permute_states
    rng = np.random.default_rng(5)
    dead = Lattice.from_arcs([(0, 1, 3, 3, 1.0, 1.0), (0, 2, 4, 4, 1.0, 1.0), (3, 1, 5, 5, 1.0, 1.0)],
                             {1: (0.0, 0.0)}, num_states=4)  # 2 is not coaccessible, 3 not accessible
    lats = [dead] + [random_compact_lattice(rng, num_frames=30, num_states=8) for _ in range(5)]
    mask = fb.K_ACCESSIBLE | fb.K_NOT_ACCESSIBLE | fb.K_COACCESSIBLE | fb.K_NOT_COACCESSIBLE | fb.K_ACYCLIC
    for lat in lats:
        fast = fb.compute_properties(lat)
        slow = fb.compute_properties(permute_states(rng, lat))
        assert fast & mask == slow & mask
    p = fb.compute_properties(dead)
    assert p & fb.K_NOT_ACCESSIBLE and p & fb.K_NOT_COACCESSIBLE


def test_string_properties_shortcut_matches_the_general_computation():
    from asr_lm_quant.kaldi import fst_binary as fb
    from asr_lm_quant.kaldi.lattice import linear_lattice
    for lat in (linear_lattice([3, 0, 5], 1.5, 2.0, word_alignments=[[1], [2, 2], []], final_alignment=[4]),
                linear_lattice([], 0.0, 0.0), linear_lattice([7, 7], 0.0, 0.0)):
        fast = fb.compute_properties(lat)
        # The same lattice with a second, unreachable final state is no string: the general computation.
        assert fast & fb.K_STRING
        general = fb.compute_properties(lat.replace(final_graph=np.append(lat.final_graph, 0.0),
                                                    final_acoustic=np.append(lat.final_acoustic, 0.0),
                                                    final_ali_offsets=np.append(lat.final_ali_offsets,
                                                                                lat.final_ali_offsets[-1])))
        keep = ~(fb.K_STRING | fb.K_NOT_STRING | fb.K_ACCESSIBLE | fb.K_NOT_ACCESSIBLE)
        assert fast & keep == general & keep
