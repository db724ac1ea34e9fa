"""Kaldi-style LMWT x penalty sweep: best paths, wer_LMWT_WIP / best_wer / wer_details files."""

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.scoring.bestpath import best_paths, word_times
from asr_lm_quant.scoring.kaldi_sweep import score_hyp_file, sweep_decode_dir, sweep_texts
from asr_lm_quant.scoring.sweep import Setting, make_settings

WORDS = ["<eps>", "a", "b", "c", "d", "e", "f", "g", "h", "i", "x", "#0", "<s>", "</s>"]
ID = {w: i for i, w in enumerate(WORDS)}


def _two_path(correct, g1, a1, wrong, g2, a2):
    """A CompactLattice with two word sequences sharing start and final states."""
    arcs, s = [], 1
    final = 1 + len(correct) - 1 + len(wrong) - 1 + 1
    for seq, g, a in ((correct, g1, a1), (wrong, g2, a2)):
        prev = 0
        for i, w in enumerate(seq):
            last = i == len(seq) - 1
            nxt = final if last else s
            # graph cost on the first arc, acoustic spread over the frames (3 frames per word)
            arcs.append((prev, nxt, ID[w], ID[w], g if i == 0 else 0.0, a / len(seq), [5, 5, 6]))
            if not last:
                prev, s = s, s + 1
    return Lattice.from_arcs(arcs, {final: (0.0, 0.0, [1])}, num_states=final + 1)


def _decode_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("utt1 a b c\nutt2 d e\nutt3 g h\n")
    (data / "utt2spk").write_text("utt1 s1\nutt2 s1\nutt3 s2\n")
    lang = tmp_path / "lang"
    lang.mkdir()
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS)))
    dec = tmp_path / "decode"
    dec.mkdir()
    # utt1: right at LMWT <= 8 (10 + 100/L vs 5 + 141/L), wrong (a x c) above.
    # utt2: the insertion "d e f" wins unless the penalty is >= 0.5 (graph 19.7 vs 20).
    # utt3: always "g i" (one substitution).
    write_lattices(f"ark:| gzip -c > {dec}/lat.1.gz",
                   [("utt1", _two_path("a b c".split(), 10, 100, "a x c".split(), 5, 141)),
                    ("utt2", _two_path("d e".split(), 20, 50, "d e f".split(), 19.7, 50))])
    write_lattices(f"ark:| gzip -c > {dec}/lat.2.gz",
                   [("utt3", _two_path("g i".split(), 1, 10, "g i".split(), 2, 10))])
    (dec / "num_jobs").write_text("2\n")
    return data, lang, dec


def test_sweep_files_and_best_wer(tmp_path):
    data, lang, dec = _decode_dir(tmp_path)
    summary = sweep_decode_dir(data, lang, dec, progress=False)
    sk = dec / "scoring_kaldi"
    assert (sk / "penalty_0.0" / "7.txt").read_text() == "utt1 a b c\nutt2 d e f\nutt3 g i\n"
    assert (sk / "penalty_0.5" / "9.txt").read_text() == "utt1 a x c\nutt2 d e\nutt3 g i\n"
    assert (dec / "wer_7_0.0").read_text() == (
        f"compute-wer --text --mode=present ark:{dec}/scoring_kaldi/test_filt.txt ark,p:- \n"
        "%WER 28.57 [ 2 / 7, 1 ins, 0 del, 1 sub ]\n"
        "%SER 66.67 [ 2 / 3 ]\n"
        "Scored 3 sentences, 0 not present in hyp.\n")
    assert (dec / "wer_17_1.0").read_text().splitlines()[1] == "%WER 28.57 [ 2 / 7, 0 ins, 0 del, 2 sub ]"
    assert sorted(p.name for p in dec.glob("wer_*")) == sorted(
        f"wer_{l}_{w}" for l in range(7, 18) for w in ("0.0", "0.5", "1.0"))
    # Lowest 14.29 first reached at LMWT 7 with penalty 0.5 (penalties outer, weights inner).
    assert (sk / "best_wer").read_text() == f"%WER 14.29 [ 1 / 7, 0 ins, 0 del, 1 sub ] {dec}/wer_7_0.5\n"
    wd = sk / "wer_details"
    assert (wd / "lmwt").read_text() == "7\n" and (wd / "wip").read_text() == "0.5\n"
    assert "utt3 #csid 1 1 0 0" in (wd / "per_utt").read_text().splitlines()
    assert (wd / "per_spk").read_text().splitlines()[-2].split() == ["SUM", "raw", "3", "7", "6", "1", "0", "0",
                                                                     "1", "1"]
    assert (wd / "ops").read_text().splitlines()[-1] == "substitution  h    i    1"
    assert (sk / "test_filt.txt").read_text() == (data / "text").read_text()
    js = json.loads((sk / "sweep.json").read_text())
    assert js == summary and len(js["settings"]) == 33
    assert (js["best"]["lmwt"], js["best"]["wip"], js["best"]["errors"]) == (7.0, "0.5", 1)
    assert (sk / "wer_vs_lmwt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "**14.29**" in (sk / "sweep.md").read_text()


def test_sweep_options_and_filters(tmp_path):
    data, lang, dec = _decode_dir(tmp_path)
    flt = tmp_path / "hypfilt.sh"
    flt.write_text("#!/bin/sh\nsed -e 's/ f$//'\n")  # drop a trailing "f", as a recipe filter might
    flt.chmod(0o755)
    s = sweep_decode_dir(data, lang / "words.txt", dec, min_lmwt=8, max_lmwt=9, wips="0.0", stats=False,
                         plot=False, progress=False, hyp_filter_cmd=str(flt))
    assert [(r["lmwt"], r["wip"], r["errors"]) for r in s["settings"]] == [(8.0, "0.0", 1), (9.0, "0.0", 2)]
    assert (dec / "scoring_kaldi" / "penalty_0.0" / "8.txt").read_text() == "utt1 a b c\nutt2 d e\nutt3 g i\n"
    assert not (dec / "scoring_kaldi" / "wer_details").exists()
    with pytest.raises(InputError, match="above"):
        sweep_decode_dir(data, lang, dec, min_lmwt=9, max_lmwt=8, progress=False)
    with pytest.raises(InputError, match="not a number"):
        sweep_decode_dir(data, lang, dec, wips="0.0,abc", progress=False)


def test_sweep_errors_leave_no_output(tmp_path):
    data, lang, dec = _decode_dir(tmp_path)
    (lang / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(WORDS[:5])))  # no "x"
    with pytest.raises(InputError, match="not in the symbol table"):
        sweep_decode_dir(data, lang, dec, progress=False)
    assert not list(dec.glob("wer_*"))
    assert not (dec / "scoring_kaldi" / "best_wer").exists()
    assert not list((dec / "scoring_kaldi").glob("penalty_*"))
    (dec / "num_jobs").write_text("3\n")
    with pytest.raises(InputError, match="lat.3.gz"):
        sweep_decode_dir(data, lang, dec, progress=False)


def test_sweep_from_texts(tmp_path):
    data, _, _ = _decode_dir(tmp_path)
    h1 = tmp_path / "h1"
    h1.write_text("utt1 a b c\nutt2 d e\nutt3 g h\n")
    h2 = tmp_path / "h2"
    h2.write_text("utt1 a b\nutt2 d e\nutt3 g h\n")
    out = tmp_path / "out"
    s = sweep_texts(data, {Setting(10.0, "0.0"): h1, Setting(11.0, "0.0"): h2}, out, plot=False)
    assert [r["errors"] for r in s["settings"]] == [0, 1]
    assert (out / "scoring_kaldi" / "best_wer").read_text() == f"%WER 0.00 [ 0 / 7, 0 ins, 0 del, 0 sub ] {out}/wer_10_0.0\n"
    res = score_hyp_file(data / "text", h2, out_dir=tmp_path / "one", utt2spk=data / "utt2spk")
    assert res.wer_line() == "%WER 14.29 [ 1 / 7, 0 ins, 1 del, 0 sub ]"
    assert (tmp_path / "one" / "wer").read_text().startswith("%WER 14.29")
    assert (tmp_path / "one" / "wer_details" / "per_utt").exists()


def _random_dag(rng, n_states=9, n_arcs=20):
    arcs = []
    for _ in range(n_arcs):
        s = rng.randrange(n_states - 1)
        d = rng.randrange(s + 1, n_states)
        w = rng.choice([0, 1, 2, 3, 4])
        arcs.append((s, d, w, w, rng.uniform(0, 10), rng.uniform(0, 100), [7] * rng.randint(0, 4)))
    for s in range(n_states - 1):  # keep everything connected to the end
        arcs.append((s, s + 1, 1, 1, 5.0, 50.0, [3]))
    finals = {n_states - 1: (rng.uniform(0, 2), rng.uniform(0, 2), [])}
    if rng.random() < 0.5:
        finals[n_states - 2] = (rng.uniform(0, 2), 1.0, [])
    # Shuffle state ids so that they are not in topological order.
    perm = list(range(n_states))
    rest = perm[1:]
    rng.shuffle(rest)
    perm = [0] + rest
    arcs = [(perm[a[0]], perm[a[1]], *a[2:]) for a in arcs]
    finals = {perm[s]: w for s, w in finals.items()}
    return Lattice.from_arcs(arcs, finals, num_states=n_states)


def _all_paths(lat):
    offs = lat.arc_offsets()
    out = []

    def walk(s, arcs):
        if lat.is_final()[s]:
            out.append((list(arcs), s))
        for i in range(offs[s], offs[s + 1]):
            walk(int(lat.dst[i]), arcs + [i])
    walk(lat.start, [])
    return out


def test_best_paths_match_brute_force():
    rng = random.Random(3)
    settings = [(1.0, 1 / 7, 0.0), (1.0, 1 / 12, 0.5), (1.0, 1 / 17, 1.0), (10.0, 1.0, 0.5), (1.0, 1.0, -3.0)]
    gs, ac, wp = zip(*settings)
    for _ in range(30):
        lat = _random_dag(rng)
        got = best_paths(lat, gs, ac, wp)
        paths = _all_paths(lat)
        for k, (g, a, p) in enumerate(settings):
            costs = [sum(np.float32(lat.graph[i] * g) + np.float32(lat.acoustic[i] * a)
                         + (p if lat.olabel[i] else 0.0) for i in arcs)
                     + lat.final_graph[s] * g + lat.final_acoustic[s] * a for arcs, s in paths]
            assert got[k].cost == pytest.approx(min(costs), rel=1e-6, abs=1e-5)
            j = int(np.argmin(costs))
            if sorted(costs)[1] - costs[j] > 1e-6:  # unique best: same words
                assert got[k].words == [int(lat.olabel[i]) for i in paths[j][0] if lat.olabel[i]]


def test_best_path_edge_cases():
    lat = Lattice.from_arcs([(0, 1, 1, 1, 1.0, 1.0, [1, 1]), (1, 0, 2, 2, 1.0, 1.0, [2])], {1: (0.0, 0.0)})
    with pytest.raises(InputError, match="cycle"):
        best_paths(lat, [1.0], [1.0], [0.0], key="u1")
    nofinal = Lattice.from_arcs([(0, 1, 1, 1, 1.0, 1.0)], {}, num_states=2)
    assert best_paths(nofinal, [1.0], [1.0], [0.0]) == [None]
    assert best_paths(Lattice.empty(), [1.0, 2.0], [1.0, 1.0], [0.0, 0.0]) == [None, None]
    # Word times: 3 + 2 frames, epsilon arc of 4 frames in between.
    lat = Lattice.from_arcs([(0, 1, 5, 5, 0.0, 0.0, [1, 1, 1]), (1, 2, 0, 0, 0.0, 0.0, [2] * 4),
                             (2, 3, 6, 6, 0.0, 0.0, [3, 3])], {3: (0.0, 0.0)})
    bp = best_paths(lat, [1.0], [1.0], [0.0])[0]
    assert word_times(lat, bp) == [(5, 0, 3), (6, 7, 2)]


def test_settings_order():
    s = make_settings(7, 9, "0.0,1.0")
    assert [x.name for x in s] == ["7_0.0", "8_0.0", "9_0.0", "7_1.0", "8_1.0", "9_1.0"]
