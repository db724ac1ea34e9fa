"""Which cost the old LM removes: for a G.fst the cheapest path through G with #0 back-off arcs as epsilons
(what decoding put into the lattices), checked against OpenFst's own command-line tools; with --use-phi true
the ARPA back-off walk (kenlm). An LM with negative back-off costs (Witten-Bell) and one with positive ones."""

import json
import math
import shutil
import subprocess
from collections import Counter, defaultdict

import numpy as np
import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.ngram.arpa import ArpaLM
from asr_lm_quant.ngram.kaldi_lm import FstLM
from asr_lm_quant.ngram.old_lm import open_old_lm, resolve_old_lm
from conftest import TINY as tiny

LN10 = math.log(10.0)
need_fst_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("fstcompile", "fstrelabel", "fstcompose", "fstshortestdistance")),
    reason="OpenFst's command-line tools (Debian libfst-tools, steps/install_system_deps.sh) not installed: they "
           "are the independent reference")


def witten_bell_arpa(sentences, order=3, interpolate=False) -> str:
    """A Witten-Bell back-off LM in ARPA form, as SRILM's ``-wbdiscount`` without ``-interpolate`` (written here,
    independently of the project): seen n-grams get ``c(h, w) / (c(h) + T(h))``, the rest backs off with the
    weight that makes the distribution sum to one. That weight exceeds 1 (a negative back-off cost) where the
    words seen after ``h`` hold much of the lower order's mass. ``interpolate`` (``-interpolate``): seen n-grams
    get ``(c(h, w) + T(h) p(w | h')) / (c(h) + T(h))`` and every back-off weight is ``T(h) / (c(h) + T(h))`` < 1."""
    counts = [Counter() for _ in range(order + 1)]
    for s in sentences:
        toks = ["<s>"] + s + ["</s>"]
        for n in range(1, order + 1):
            for i in range(max(0, 1 - (n > 1)), len(toks) - n + 1):
                gram = tuple(toks[i:i + n])
                if n == 1 and gram == ("<s>",):
                    continue
                counts[n][gram] += 1
    vocab = sorted(w for (w,) in counts[1])
    total = sum(counts[1].values())
    prob = [dict() for _ in range(order + 1)]
    prob[1] = {(w,): (counts[1][(w,)] + 0.5) / (total + 0.5 * len(vocab)) for w in vocab}
    bow = [dict() for _ in range(order + 1)]

    def p(h, w):  # the back-off probability of w after h (h a tuple of words)
        if not h:
            return prob[1][(w,)]
        if h + (w,) in prob[len(h) + 1]:
            return prob[len(h) + 1][h + (w,)]
        return bow[len(h)].get(h, 1.0) * p(h[1:], w)

    for n in range(2, order + 1):
        follow = defaultdict(dict)
        for gram, c in counts[n].items():
            follow[gram[:-1]][gram[-1]] = c
        for h, ws in follow.items():
            ch, types = sum(ws.values()), len(ws)
            for w, c in ws.items():
                prob[n][h + (w,)] = (c + (types * p(h[1:], w) if interpolate else 0.0)) / (ch + types)
            seen_hi = sum(prob[n][h + (w,)] for w in ws)
            seen_lo = sum(p(h[1:], w) for w in ws)
            bow[n - 1][h] = (1 - seen_hi) / (1 - seen_lo)
    lines = ["\\data\\"] + [f"ngram {n}={len(prob[n]) + (n == 1)}" for n in range(1, order + 1)] + [""]
    for n in range(1, order + 1):
        lines.append(f"\\{n}-grams:")
        if n == 1:
            lines.append(f"-99\t<s>\t{math.log10(bow[1][('<s>',)]):.7f}")
        for gram in sorted(prob[n]):
            b = bow[n].get(gram) if n < order else None
            lines.append(f"{math.log10(prob[n][gram]):.7f}\t{' '.join(gram)}" +
                         (f"\t{math.log10(b):.7f}" if b is not None else ""))
        lines.append("")
    return "\n".join(lines + ["\\end\\", ""])


def _g_fst(arpa, words, out):
    kaldilm = pytest.importorskip("kaldilm", reason="kaldilm (Kaldi's arpa2fst) builds G.fst independently of us")
    return kaldilm.arpa2fst(str(arpa), str(out), disambig_symbol="#0", read_symbol_table=str(words))


class OpenFstReference:
    """The min-over-paths cost by OpenFst's tools: G with #0 relabelled to epsilon, composed with a linear
    acceptor of the sentence, shortest distance from the start to the final states."""

    def __init__(self, g_text: str, symbols: SymbolTable, tmp):
        self.tmp, self.symbols = tmp, symbols
        (tmp / "G.txt").write_text(g_text)
        (tmp / "pairs.txt").write_text(f"{symbols.id('#0')} 0\n")
        subprocess.run(["fstcompile", str(tmp / "G.txt"), str(tmp / "G0.fst")], check=True)
        subprocess.run(["fstrelabel", f"--relabel_ipairs={tmp / 'pairs.txt'}", str(tmp / "G0.fst"),
                        str(tmp / "G1.fst")], check=True)
        subprocess.run(["fstarcsort", "--sort_type=ilabel", str(tmp / "G1.fst"), str(tmp / "Geps.fst")], check=True)

    def cost(self, words) -> float:
        t = self.tmp
        ids = [self.symbols.id(w) for w in words]
        text = "".join(f"{i}\t{i + 1}\t{w}\t{w}\n" for i, w in enumerate(ids)) + f"{len(ids)}\n"
        (t / "A.txt").write_text(text)
        subprocess.run(["fstcompile", str(t / "A.txt"), str(t / "A.fst")], check=True)
        subprocess.run(["fstcompose", str(t / "A.fst"), str(t / "Geps.fst"), str(t / "AG.fst")], check=True)
        start = subprocess.run(["fstprint", str(t / "AG.fst")], check=True, capture_output=True,
                               text=True).stdout.split()[0]
        out = subprocess.run(["fstshortestdistance", "--reverse", str(t / "AG.fst")], check=True,
                             capture_output=True, text=True).stdout
        dist = dict(line.split("\t") for line in out.splitlines() if line.strip())
        return float(dist[start])


def _sentences(rng, vocab, corpus, n_random=25):
    """Corpus sentences (explicit n-grams) and random word strings (back-off everywhere)."""
    out = [s for s in corpus[:20]]
    for _ in range(n_random):
        out.append([str(w) for w in rng.choice(vocab, size=int(rng.integers(1, 7)))])
    return out + [[]]


def _backoff_costs(g: FstLM) -> np.ndarray:
    return g.fst.weight[g.backoff[g.backoff >= 0]]


@pytest.fixture(scope="module")
def lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("semantics")
    corpus = [line.split() for line in tiny.CORPUS.read_text().splitlines() if line.split()]
    vocab = sorted({w for s in corpus for w in s})
    symbols = SymbolTable.from_words(vocab + ["#0"])
    words = root / "words.txt"
    symbols.save(words)
    out = {"corpus": corpus, "vocab": vocab, "symbols": symbols, "words": words, "root": root}
    # Witten-Bell on sentences of Zipf-distributed words: frequent histories followed by few, frequent words,
    # whose back-off weights exceed 1 (negative back-off costs), as in real Witten-Bell LMs.
    rng = np.random.default_rng(0)
    zipf = 1.0 / np.arange(1, len(vocab) + 1) ** 1.3
    wb_text = [[str(w) for w in rng.choice(vocab, size=int(rng.integers(2, 9)), p=zipf / zipf.sum())]
               for _ in range(300)]
    (root / "wb.arpa").write_text(witten_bell_arpa(wb_text + corpus))
    (root / "wbi.arpa").write_text(witten_bell_arpa(wb_text + corpus, interpolate=True))
    from asr_lm_quant.ngram import train_arpa
    (root / "text.txt").write_text(tiny.CORPUS.read_text())
    train_arpa(root / "text.txt", root / "kn.arpa", order=3)
    return out


@need_fst_tools
@pytest.mark.parametrize("name", ["wb", "wbi", "kn"])
def test_g_fst_removal_is_openfst_min_over_paths_and_use_phi_is_the_arpa_walk(lms, name, tmp_path):
    arpa = lms["root"] / f"{name}.arpa"
    g_text = _g_fst(arpa, lms["words"], "")
    _g_fst(arpa, lms["words"], tmp_path / "G.fst")
    shutil.copy(lms["words"], tmp_path / "words.txt")
    minpath = open_old_lm(tmp_path / "G.fst")
    phi = open_old_lm(tmp_path / "G.fst", use_phi="true")
    assert (minpath.semantics, phi.semantics) == ("min-over-paths", "arpa")
    bo = _backoff_costs(minpath)
    if name == "wb":  # Witten-Bell: back-off often cheaper than the explicit n-gram
        assert (bo < 0).sum() >= 5
    elif name == "wbi":
        assert (bo > 0).all()
    ref = OpenFstReference(g_text, lms["symbols"], tmp_path)
    kenlm = ArpaLM(arpa)
    sents = _sentences(np.random.default_rng(3), lms["vocab"], lms["corpus"])
    differs = 0
    for s in sents:
        want = ref.cost(s)
        got = minpath.sentence_cost(s)
        assert got == pytest.approx(want, abs=1e-4), s
        assert sum(minpath.word_costs(s)) == pytest.approx(want, abs=1e-4)
        assert phi.sentence_cost(s) == pytest.approx(kenlm.sentence_cost(s), abs=1e-4), s
        assert np.allclose(phi.word_costs(s), kenlm.word_costs(s), atol=1e-4)
        assert got <= phi.sentence_cost(s) + 1e-4  # the ARPA walk is one of the paths
        differs += phi.sentence_cost(s) - got > 1e-3
    if name == "wb":
        assert differs >= 5  # the two semantics really differ on this LM


def test_min_over_paths_on_a_hand_made_g_fst(tmp_path):
    """A bigram G with a negative back-off cost: backing off beats the explicit bigram."""
    from test_kaldi_old_lm import _vector_fst
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\nb 2\n#0 3\n<s> 4\n</s> 5\n")
    # 0: history <s> (a 0.5 -> 2; back-off -1.0 -> 1); 1: unigram state (a 1.0 -> 2, b 0.2 -> 1, final 2.0);
    # 2: after a (b 3.0 -> 1, final 0.25, back-off -0.5 -> 1).
    (tmp_path / "G.fst").write_bytes(_vector_fst(0, [(None, [(1, 1, 0.5, 2), (3, 0, -1.0, 1)]),
                                                     (2.0, [(1, 1, 1.0, 2), (2, 2, 0.2, 1)]),
                                                     (0.25, [(2, 2, 3.0, 1), (3, 0, -0.5, 1)])]))
    m = open_old_lm(tmp_path / "G.fst")
    p = open_old_lm(tmp_path / "G.fst", use_phi=True)
    # "a": <s> a (0.5) or <s> #0 a (-1 + 1 = 0), then </s>: 0.25, or via back-off -0.5 + 2.0 = 1.5.
    assert m.sentence_cost("a") == pytest.approx(0.0 + 0.25)
    assert p.sentence_cost("a") == pytest.approx(0.5 + 0.25)
    # "a b": min(0.5 + min(3.0, -0.5 + 0.2), -1 + 1 + min(3.0, -0.3)) + 2.0 = -0.3 + 2.0
    assert m.sentence_cost("a b") == pytest.approx(-0.3 + 2.0)
    assert p.sentence_cost("a b") == pytest.approx(0.5 + 3.0 + 2.0)
    assert m.sentence_cost([]) == pytest.approx(-1.0 + 2.0)
    assert sum(m.word_costs("a b a")) == pytest.approx(m.sentence_cost("a b a"))


def test_old_lm_command_says_the_semantics(lms, tmp_path, capsys):
    _g_fst(lms["root"] / "wb.arpa", lms["words"], tmp_path / "G.fst")
    shutil.copy(lms["words"], tmp_path / "words.txt")
    (tmp_path / "s.txt").write_text("i like the dog\nthe the\n")
    assert main(["old-lm", str(tmp_path / "G.fst"), "--text", str(tmp_path / "s.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = json.loads(lines[0])
    assert head["semantics"] == "min-over-paths" and head["kind"] == "fst"
    m = open_old_lm(tmp_path / "G.fst")
    assert [float(x.split("\t")[0]) for x in lines[1:]] == pytest.approx(
        [m.sentence_cost("i like the dog"), m.sentence_cost("the the")], abs=1e-5)
    assert main(["old-lm", str(tmp_path / "G.fst"), "--use-phi", "true", "--text", str(tmp_path / "s.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["semantics"] == "arpa"
    kenlm = ArpaLM(lms["root"] / "wb.arpa")
    assert float(lines[2].split("\t")[0]) == pytest.approx(kenlm.sentence_cost("the the"), abs=1e-4)
    assert main(["old-lm", str(lms["root"] / "wb.arpa")]) == 0
    assert json.loads(capsys.readouterr().out)["semantics"] == "arpa"
    assert resolve_old_lm(tmp_path / "G.fst", use_phi="false").semantics == "min-over-paths"
    assert main(["old-lm", str(tmp_path / "G.fst"), "--use-phi", "maybe"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "maybe" in err


@need_fst_tools
def test_decode_dir_graph_minus_removed_g_fst_is_the_non_lm_part(lms, tmp_path):
    """Lattices whose graph costs are non-LM costs plus G's min-over-paths cost by OpenFst (as decoding with
    HCLG puts them there): rescore-nbest's lmwt.nolm table holds the non-LM part again, for every hypothesis."""
    from asr_lm_quant.kaldi.archive import write_lattices
    from asr_lm_quant.kaldi.lattice import linear_lattice, union_lattices
    from asr_lm_quant.kaldi.nbest import read_float_table

    t = tiny.build(tmp_path / "tiny")  # its NN LM dir
    lang = tmp_path / "lang"
    lang.mkdir()
    _g_fst(lms["root"] / "wb.arpa", lms["words"], lang / "G.fst")
    shutil.copy(lms["words"], lang / "words.txt")
    ref = OpenFstReference(_g_fst(lms["root"] / "wb.arpa", lms["words"], ""), lms["symbols"], tmp_path)
    rng = np.random.default_rng(7)
    sents = _sentences(rng, lms["vocab"], lms["corpus"], n_random=10)[:-1]
    nonlm, items = {}, []
    for u in range(6):
        paths = []
        for r in range(4):
            words = sents[(4 * u + r) % len(sents)]
            rest = float(np.float32(rng.uniform(1, 5)))
            graph = float(np.float32(rest + ref.cost(words)))
            ac = float(np.float32(rng.uniform(50, 60)))
            paths.append((words, graph, ac, rest))
        key = f"utt{u}"
        items.append((key, union_lattices([linear_lattice([lms["symbols"].id(w) for w in ws], g, a)
                                           for ws, g, a, _ in paths])))
        nonlm[key] = {" ".join(ws): (g, rest) for ws, g, a, rest in paths}
    dec = tmp_path / "decode"
    dec.mkdir()
    write_lattices(f"ark:| gzip -c > {dec}/lat.1.gz", items)
    tables = tmp_path / "tables"
    rc = main(["rescore-nbest", "--old-lm", str(lang), "--lm-dir", str(t["lm"]), "--words", str(lms["words"]),
               "--weight", "0.5", "--lattices", f"ark:gunzip -c {dec}/lat.1.gz|", "--n", "10",
               "--out-tables", str(tables), "--json", str(tmp_path / "s.json")])
    assert rc == 0
    assert json.loads((tmp_path / "s.json").read_text())["old_lm"]["semantics"] == "min-over-paths"
    words = {k: " ".join(lms["symbols"].words(v)) for k, v in _int_table(tables / "words").items()}
    nolm, withlm = read_float_table(tables / "lmwt.nolm"), read_float_table(tables / "lmwt.withlm")
    assert len(nolm) == 24
    for k, v in nolm.items():
        utt = k.rsplit("-", 1)[0]
        g, rest = nonlm[utt][words[k]]
        assert withlm[k] == pytest.approx(g, abs=1e-4)
        assert v == pytest.approx(rest, abs=2e-4), (k, words[k])


def _int_table(path):
    return {line.split()[0]: [int(x) for x in line.split()[1:]] for line in path.read_text().splitlines()}
