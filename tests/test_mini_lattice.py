"""Pocketsphinx lattices -> Kaldi CompactLattices with n-gram graph costs (asr_lm_quant.decode)."""

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant.decode.expand import expand_with_lm, prune_word_graph
from asr_lm_quant.decode.pslattice import is_filler, read_ps_lattice, word_graph
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import nbest_paths
from asr_lm_quant.ngram.arpa import ArpaLM

FIX = Path(__file__).parent / "fixtures" / "mini"
REAL = FIX / "kal-009305.pslat.gz"
LN_BASE = math.log(1.0001)

# A small lattice in pocketsphinx's format: <s> then "a" then either <sil> or [NOISE] (two filler routes
# to "b"), or directly "c"; then </s>.
SMALL = """# getcwd: /x
# -logbase 1.000100e+00
#
Frames 50
#
Nodes 7 (NODEID WORD STARTFRAME FIRST-ENDFRAME LAST-ENDFRAME)
0 </s> 40 49 49 ; 0
1 b(2) 30 39 39 ; 0
2 c 25 39 39 ; 0
3 <sil> 20 29 29 ; 0
4 [NOISE] 20 29 29 ; 0
5 a 5 19 24 ; 0
6 <s> 0 4 4 ; 0
Initial 6
Final 0
#
BestSegAscr 0 (NODEID ENDFRAME ASCORE)
#
Edges (FROM-NODEID TO-NODEID ASCORE)
6 5 -10000
5 3 -20000
5 4 -30000
5 2 -25000
3 1 -5000
4 1 -1000
1 0 -7000
2 0 -9000
End
"""


def _write(tmp_path, text, name="l.lat"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _arpa(tmp_path, words, bigrams=(), trigrams=()):
    """A valid ARPA LM: uniform unigrams over ``words`` (+ <s> </s> <unk>), given bigrams and trigrams."""
    uni = sorted(set(words) | {"</s>", "<unk>"})
    lp = -math.log10(len(uni))
    lines = ["\\data\\", f"ngram 1={len(uni) + 1}", f"ngram 2={len(bigrams)}", f"ngram 3={len(trigrams)}", "",
             "\\1-grams:", "-99\t<s>\t-0.3"]
    lines += [f"{lp:.4f}\t{w}\t-0.3" for w in uni]
    lines += ["", "\\2-grams:"] + [f"-0.5\t{a} {b}\t-0.2" for a, b in bigrams]
    lines += ["", "\\3-grams:"] + [f"-0.1\t{a} {b} {c}" for a, b, c in trigrams]
    lines += ["", "\\end\\", ""]
    p = tmp_path / "lm.arpa"
    p.write_text("\n".join(lines))
    return ArpaLM(p)


def _paths(lat, n=500):
    return nbest_paths(lat, n, acoustic_scale=0.1)


def test_read_small_lattice(tmp_path):
    lat = read_ps_lattice(_write(tmp_path, SMALL))
    assert lat.frames == 50 and lat.initial == 6 and lat.final == 0
    assert lat.words[1] == "b"  # pronunciation variant folded
    assert len(lat.edges) == 8 and lat.logbase == pytest.approx(1.0001)


def test_word_graph_folds_fillers_with_cheapest_route(tmp_path):
    g = word_graph(read_ps_lattice(_write(tmp_path, SMALL)))
    arcs = {a: {b: (c, f) for b, c, f in lst} for a, lst in g.arcs.items()}
    # a -> b: the <sil> route (20000 + 5000) is cheaper than the [NOISE] route (30000 + 1000)
    assert arcs[5][1][0] == pytest.approx(25000 * LN_BASE)
    assert arcs[5][1][1] == 30 - 5
    assert arcs[5][2][0] == pytest.approx(25000 * LN_BASE)
    # arcs into the final node carry the frames of </s> too, so every path spans all 50 frames
    assert arcs[1][0][1] == (40 - 30) + (50 - 40)
    assert arcs[6] == {5: pytest.approx((10000 * LN_BASE, 5))}
    assert set(arcs) == {6, 5, 1, 2}


def test_expansion_graph_costs_are_exact_trigram_costs(tmp_path):
    g = word_graph(read_ps_lattice(_write(tmp_path, SMALL)))
    lm = _arpa(tmp_path, ["a", "b", "c"], bigrams=[("a", "b"), ("<s>", "a")], trigrams=[("<s>", "a", "b")])
    ids = {"a": 1, "b": 2, "c": 3}
    lat = expand_with_lm(g, lm, ids, acoustic_scale=2.0)
    seqs = {}
    for p in _paths(lat):
        words = tuple({1: "a", 2: "b", 3: "c"}[w] for w in p.words)
        seqs[words] = p
        assert p.graph_cost == pytest.approx(lm.sentence_cost(list(words)), abs=1e-4)
    assert set(seqs) == {("a", "b"), ("a", "c")}
    ab = seqs[("a", "b")]
    assert ab.acoustic_cost == pytest.approx(2.0 * (10000 + 25000 + 7000) * LN_BASE, rel=1e-6)


def test_real_lattice_every_path_gets_its_lm_cost(tmp_path):
    ps = read_ps_lattice(REAL)
    g = word_graph(ps)
    words = sorted({w for i, w in enumerate(ps.words) if not is_filler(w)})
    assert "newman" in words and not any(is_filler(w) for w in words)
    ref = (FIX / "kal-009305.ref").read_text().split()[1:]
    tri = list(zip(["<s>"] + ref, ref, ref[1:] + ["</s>"]))
    lm = _arpa(tmp_path, words, bigrams=[(a, b) for a, b, _ in tri] + [("<s>", ref[0])], trigrams=tri[1:-1])
    ids = {w: i + 1 for i, w in enumerate(words)}
    back = {i: w for w, i in ids.items()}
    lat = expand_with_lm(prune_word_graph(g, lm, 16.0, acoustic_scale=1.5), lm, ids, acoustic_scale=1.5)
    assert lat.compact and lat.num_states > 10 and np.all(lat.ilabel > 0)  # no epsilon arcs
    paths = _paths(lat, 200)
    assert len(paths) > 20
    for p in paths:
        assert p.graph_cost == pytest.approx(lm.sentence_cost([back[w] for w in p.words]), abs=1e-3)
        frames = sum(len(lat.arc_alignment(i)) for i in p.arcs)
        assert frames == ps.frames  # one transition-id per frame on every path


def test_prune_word_graph_infinite_beam_keeps_everything(tmp_path):
    g = word_graph(read_ps_lattice(_write(tmp_path, SMALL)))
    lm = _arpa(tmp_path, ["a", "b", "c"])
    same = prune_word_graph(g, lm, math.inf)
    assert same.arcs == g.arcs
    tight = prune_word_graph(g, lm, 0.0)
    assert sum(map(len, tight.arcs.values())) < sum(map(len, g.arcs.values()))


def test_word_outside_symbol_table_names_the_utterance(tmp_path):
    g = word_graph(read_ps_lattice(_write(tmp_path, SMALL)))
    lm = _arpa(tmp_path, ["a", "b", "c"])
    with pytest.raises(InputError, match="utt7.*'c'"):
        expand_with_lm(g, lm, {"a": 1, "b": 2}, key="utt7")


@pytest.mark.parametrize("bad,match", [
    (SMALL.replace("3 1 -5000", "3 1 x"), "line 24"),
    (SMALL.replace("End\n", ""), "truncated"),
    (SMALL.replace("Initial 6", "Initial 9"), "Initial node 9"),
    (SMALL.replace("4 1 -1000", "4 11 -1000"), "line 25"),
])
def test_malformed_lattices(tmp_path, bad, match):
    with pytest.raises(InputError, match=match):
        read_ps_lattice(_write(tmp_path, bad))


def test_gzip_and_missing(tmp_path):
    p = tmp_path / "l.lat.gz"
    with gzip.open(p, "wt") as f:
        f.write(SMALL)
    assert read_ps_lattice(p).frames == 50
    with pytest.raises(InputError, match="does not exist"):
        read_ps_lattice(tmp_path / "nope.lat")
