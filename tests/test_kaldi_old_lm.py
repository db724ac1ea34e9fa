"""The old LM from Kaldi's compiled forms: G.fst (built independently by kaldilm's arpa2fst, OpenFst's tools and
kaldifst) and G.carpa (laid out byte by byte after Kaldi's writer), each against kenlm on the ARPA file."""

import importlib.util
import math
import shutil
import struct
import subprocess

import numpy as np
import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import read_lattices
from asr_lm_quant.kaldi.nbest import nbest_paths
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.ngram.arpa import ArpaLM, check_arpa
from asr_lm_quant.ngram.kaldi_lm import ConstArpaLM, FstLM
from asr_lm_quant.ngram.old_lm import open_old_lm, resolve_old_lm
from conftest import REPO, TINY as tiny

LN10 = math.log(10.0)
_spec = importlib.util.spec_from_file_location("carpa_layout", REPO / "tests/fixtures/kaldi/carpa_layout.py")
carpa_layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(carpa_layout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    t = tiny.build(tmp_path_factory.mktemp("oldlm"))
    # Every hypothesis of a small n-best set: the 10 best of each lattice of the tiny decode dir.
    hyps = []
    for j in (1, 2):
        for key, lat in read_lattices(f"ark:gunzip -c {t['decode']}/lat.{j}.gz|"):
            hyps += [t["symbols"].words(p.words) for p in nbest_paths(lat, 10, 0.1)]
    hyps += [line.split() for line in tiny.CORPUS.read_text().splitlines()] + [["zebra"], []]
    t["hyps"] = hyps
    t["arpa_lm"] = ArpaLM(t["arpa"])
    return t


def kaldilm_g_fst(t, out, **kw):
    kaldilm = pytest.importorskip("kaldilm", reason="kaldilm (Kaldi's arpa2fst) builds G.fst independently of us")
    return kaldilm.arpa2fst(str(t["arpa"]), str(out), disambig_symbol="#0", read_symbol_table=str(t["words"]), **kw)


def assert_same_costs(lm, ref, hyps):
    assert len(hyps) > 40
    for words in hyps:
        assert lm.sentence_cost(words) == pytest.approx(ref.sentence_cost(words), abs=1e-4), words
        assert np.allclose(lm.word_costs(words), ref.word_costs(words), atol=1e-4), words


# --- G.fst ------------------------------------------------------------------------------------------------
def test_g_fst_from_kaldis_arpa2fst_scores_as_the_arpa_file(setup, tmp_path):
    g = tmp_path / "G.fst"
    kaldilm_g_fst(setup, g)
    assert check_arpa(g) == "fst"
    lm = FstLM(g, setup["words"], use_phi=True)  # the ARPA walk; the default min over paths: test_old_lm_semantics
    assert lm.fst.fst_type == "vector" and lm.fst.num_arcs > 300
    assert_same_costs(lm, setup["arpa_lm"], setup["hyps"])
    assert not lm.has_unk and lm.is_oov("nonsense") and not lm.is_oov("zebra")
    # Symbol tables stored in the file (arpa2fst --keep-symbols) are skipped.
    kaldilm_g_fst(setup, tmp_path / "Gsym.fst", keep_symbols=True)
    assert (tmp_path / "Gsym.fst").stat().st_size > g.stat().st_size + 200
    assert_same_costs(FstLM(tmp_path / "Gsym.fst", setup["words"], use_phi=True), setup["arpa_lm"], setup["hyps"])


def test_const_and_aligned_g_fst_from_openfst_tools(setup, tmp_path):
    if not shutil.which("fstcompile"):
        pytest.skip("OpenFst's command-line tools (Debian libfst-tools, steps/install_system_deps.sh) not installed")
    text = kaldilm_g_fst(setup, "")
    (tmp_path / "G.txt").write_text(text)
    subprocess.run(["fstcompile", str(tmp_path / "G.txt"), str(tmp_path / "G.fst")], check=True)
    for args, name in ((["--fst_type=const"], "Gc.fst"), (["--fst_type=const", "--fst_align"], "Ga.fst")):
        subprocess.run(["fstconvert", *args, str(tmp_path / "G.fst"), str(tmp_path / name)], check=True)
    for name, kind in (("G.fst", "vector"), ("Gc.fst", "const"), ("Ga.fst", "const")):
        lm = FstLM(tmp_path / name, setup["words"], use_phi=True)
        assert lm.fst.fst_type == kind
        assert_same_costs(lm, setup["arpa_lm"], setup["hyps"])
    assert (tmp_path / "Ga.fst").read_bytes()[25:29] == struct.pack("<i", 1)  # the aligned layout's version


def _vector_fst(start, states):
    """Bytes of a vector StdArc FST: ``states`` is ``[(final or None, [(il, ol, w, next), ...])]``."""
    out = [struct.pack("<i", 2125659606), struct.pack("<i", 6), b"vector", struct.pack("<i", 8), b"standard",
           struct.pack("<iiQqqq", 2, 0, 0, start, len(states), sum(len(a) for _, a in states))]
    for final, arcs in states:
        out.append(struct.pack("<fq", math.inf if final is None else final, len(arcs)))
        out += [struct.pack("<iifi", *a) for a in arcs]
    return b"".join(out)


def test_hand_made_g_fst_backoff_final_and_errors(tmp_path, capsys):
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\nb 2\nc 3\n#0 4\n<s> 5\n</s> 6\n")
    # State 0: history <s> (has "a", backs off to 1); 1: unigram state (a, b; no c, no backoff); 2: after "a"
    # (final, has "b", backs off to 1).
    g = tmp_path / "G.fst"
    g.write_bytes(_vector_fst(0, [(None, [(1, 1, 0.5, 2), (4, 0, 1.25, 1)]),
                                  (2.0, [(1, 1, 1.0, 2), (2, 2, 3.0, 1)]),
                                  (0.25, [(2, 2, 0.75, 1), (4, 0, 0.1, 1)])]))
    lm = open_old_lm(g)  # words.txt beside it
    assert lm.word_costs("a b") == pytest.approx([0.5, 0.75, 2.0])
    assert lm.word_costs("b") == pytest.approx([1.25 + 3.0, 2.0])
    assert lm.sentence_cost("a") == pytest.approx(0.75)
    assert lm.sentence_cost([]) == pytest.approx(1.25 + 2.0)  # </s> from the backoff state's final weight
    with pytest.raises(InputError, match=r"G.fst: no arc for word 'c' \(id 3\) from state 1 and no backoff arc"):
        lm.sentence_cost("a c")
    with pytest.raises(InputError, match=r"word 'zzz' is not in .*words.txt and the LM has no unknown-word"):
        lm.sentence_cost("zzz")
    data = g.read_bytes()
    for cut in (10, 60, len(data) - 5):
        (tmp_path / "cut" / "G.fst").parent.mkdir(exist_ok=True)
        (tmp_path / "cut" / "G.fst").write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"cut/G.fst, .*(truncated FST|bad fst type length)"):
            FstLM(tmp_path / "cut" / "G.fst", tmp_path / "words.txt")
    (tmp_path / "small.txt").write_text("<eps> 0\na 1\n")
    with pytest.raises(InputError, match="small.txt: has no word for label 2"):
        FstLM(g, tmp_path / "small.txt")
    rc = main(["old-lm", str(g), "--text", str(tmp_path / "words.txt")])
    assert rc == 1 and "Traceback" not in capsys.readouterr().err


# --- G.carpa ----------------------------------------------------------------------------------------------
TINY_BIGRAM = """
\\data\\
ngram 1=4
ngram 2=3

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.5
-0.6\ta\t-0.3
-0.7\tb

\\2-grams:
-0.2\t<s> a
-0.4\ta b
-0.9\ta </s>

\\end\\
"""


def _f(x):
    """A log10 value as Kaldi stores it: float32 natural log, as int32 bits."""
    v = np.float32(float(np.float32(x)) * LN10)
    return int(np.array([v], "<f4").view("<i4")[0])


def hand_carpa() -> bytes:
    """TINY_BIGRAM (words a=1 b=2 <s>=3 </s>=4) laid out by hand from the format: records sorted by word id,
    a@0 (7 words), b@7 (3), <s>@10 (5), </s>@15 (3); bigram children are leaves (logprob bits, bit 0 clear)."""
    states = [_f(-0.6), _f(-0.3), 2, 2, _f(-0.4) & ~1, 4, _f(-0.9) & ~1,
              _f(-0.7), 0, 0,
              _f(-99), _f(-0.5), 1, 1, _f(-0.2) & ~1,
              _f(-1.0), 0, 0]
    return (b"\0B<ConstArpaLm> <LmInfo> \x04" + struct.pack("<i", 3) + b"\x04" + struct.pack("<i", 4)
            + b"\x04" + struct.pack("<i", -1) + b"\x04" + struct.pack("<i", 2) + b"</LmInfo> <LmStates> \x08"
            + struct.pack("<q", 18) + struct.pack("<18i", *states) + b"</LmStates> <LmUnigram> \x04"
            + struct.pack("<i", 5) + struct.pack("<5q", 0, 1, 8, 11, 16) + b"</LmUnigram> <LmOverflow> \x04"
            + struct.pack("<i", 0) + b"</LmOverflow> </ConstArpaLm> ")


@pytest.fixture
def bigram(tmp_path):
    (tmp_path / "words.txt").write_text("<eps> 0\na 1\nb 2\n<s> 3\n</s> 4\n")
    (tmp_path / "lm.arpa").write_text(TINY_BIGRAM)
    (tmp_path / "G.carpa").write_bytes(hand_carpa())
    return tmp_path


def test_hand_laid_g_carpa(bigram):
    lm = ConstArpaLM(bigram / "G.carpa", bigram / "words.txt")
    assert (lm.bos, lm.eos, lm.order, lm.num_words, lm.has_unk) == (3, 4, 2, 5, False)
    for text, log10 in (("a b", 0.2 + 0.4 + 1.0), ("b", 0.5 + 0.7 + 1.0), ("a", 0.2 + 0.9), ("b a", 1.2 + 0.6 + 0.9)):
        assert lm.sentence_cost(text) == pytest.approx(log10 * LN10, abs=1e-5)
        assert lm.sentence_cost(text) == pytest.approx(ArpaLM(bigram / "lm.arpa").sentence_cost(text), abs=1e-4)
    # The test's layout of Kaldi's builder gives the same bytes as the hand layout.
    order, ngrams = carpa_layout.parse_arpa(TINY_BIGRAM, SymbolTable.load(bigram / "words.txt").word_to_id)
    assert carpa_layout.build_carpa(order, ngrams, bos=3, eos=4) == hand_carpa()


@pytest.mark.parametrize("layout", [{}, {"max_address_offset": 4}, {"old_layout": True}, {"unk": True}])
def test_g_carpa_of_a_trigram_scores_as_the_arpa_file(setup, tmp_path, layout):
    syms = setup["symbols"]
    text = setup["arpa"].read_text()
    words = setup["words"]
    if layout.pop("unk", False):  # an LM with <unk>: words outside it are scored as <unk>, as kenlm does
        text = text.replace("\\2-grams:", "-2.5\t<unk>\n\n\\2-grams:").replace("ngram 1=31", "ngram 1=32")
        (tmp_path / "lm.arpa").write_text(text)
        syms = SymbolTable(list(syms.word_to_id.items()) + [("<unk>", 40)])
        words = tmp_path / "words.txt"
        syms.save(words)
    order, ngrams = carpa_layout.parse_arpa(text, syms.word_to_id)
    unk = syms.word_to_id.get("<unk>", -1)
    (tmp_path / "G.carpa").write_bytes(carpa_layout.build_carpa(order, ngrams, bos=syms.id("<s>"),
                                                                eos=syms.id("</s>"), unk=unk, **layout))
    lm = ConstArpaLM(tmp_path / "G.carpa", words)
    if layout.get("max_address_offset"):
        assert len(lm.overflow) > 50  # child records reached through the overflow table
    ref = ArpaLM(tmp_path / "lm.arpa") if unk != -1 else setup["arpa_lm"]
    assert_same_costs(lm, ref, setup["hyps"])
    if unk != -1:
        assert lm.has_unk and lm.is_oov("nonsense")
        assert lm.sentence_cost("i like nonsense") == pytest.approx(ref.sentence_cost("i like nonsense"), abs=1e-4)


def test_truncated_or_mismatched_g_carpa(bigram, tmp_path, capsys):
    data = hand_carpa()
    for cut in (1, 20, 40, 60, 100, len(data) - 60, len(data) - 1):
        (bigram / "cut.carpa").write_bytes(data[:cut])
        with pytest.raises(InputError, match=r"cut.carpa, .*(truncated G.carpa|expected the token|not a Kaldi)"):
            ConstArpaLM(bigram / "cut.carpa", bigram / "words.txt")
    rc = main(["old-lm", str(bigram / "cut.carpa"), "--words", str(bigram / "words.txt"), "--open"])
    err = capsys.readouterr().err
    assert rc == 1 and "cut.carpa" in err and "truncated G.carpa" in err and "Traceback" not in err
    (tmp_path / "other.txt").write_text("<eps> 0\na 1\nb 2\n</s> 3\n<s> 4\n")
    with pytest.raises(InputError, match=r"other.txt: <s> is id 4 here but 3 in .*G.carpa"):
        ConstArpaLM(bigram / "G.carpa", tmp_path / "other.txt")
    bad = bytearray(data)
    at = bad.index(b"<LmUnigram> ") + 12 + 5 + 8 * 2  # the unigram entry of b (id 2)
    bad[at:at + 8] = struct.pack("<q", 99)
    (bigram / "bad.carpa").write_bytes(bytes(bad))
    with pytest.raises(InputError, match="unigram table points outside the state array"):
        ConstArpaLM(bigram / "bad.carpa", bigram / "words.txt")


# --- --old-lm: files and lang dirs ------------------------------------------------------------------------
def test_lang_dir_resolution(setup, tmp_path):
    lang = tmp_path / "lang"
    lang.mkdir()
    with pytest.raises(InputError, match="neither G.carpa nor G.fst"):
        resolve_old_lm(lang)
    kaldilm_g_fst(setup, lang / "G.fst")
    with pytest.raises(InputError, match="lang dir without words.txt"):
        resolve_old_lm(lang)
    shutil.copy(setup["words"], lang / "words.txt")
    r = resolve_old_lm(lang)
    assert (r.kind, r.path, r.words) == ("fst", lang / "G.fst", lang / "words.txt")
    syms = setup["symbols"]
    order, ngrams = carpa_layout.parse_arpa(setup["arpa"].read_text(), syms.word_to_id)
    (lang / "G.carpa").write_bytes(carpa_layout.build_carpa(order, ngrams, bos=syms.id("<s>"), eos=syms.id("</s>")))
    r = resolve_old_lm(lang)
    assert (r.kind, r.path) == ("carpa", lang / "G.carpa")  # G.carpa wins over G.fst
    assert isinstance(open_old_lm(lang), ConstArpaLM)
    # A G.fst alone: words.txt beside it, else --words, else an error.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(lang / "G.fst", alone / "G.fst")
    with pytest.raises(InputError, match="needs its words.txt: none beside it"):
        resolve_old_lm(alone / "G.fst")
    assert resolve_old_lm(alone / "G.fst", setup["words"]).words == setup["words"]
    assert resolve_old_lm(setup["arpa"]).kind == "arpa"
    (lang / "G.carpa").write_bytes(b"\0Bxyz")
    with pytest.raises(InputError, match="not a ConstArpaLm"):
        resolve_old_lm(lang)


def _nbest_costs(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return {(r[0], r[1]): (r[2], float(r[3]), float(r[4])) for r in rows}


def test_rescore_nbest_with_a_lang_dir_as_with_the_arpa_file(setup, tmp_path):
    lang = tmp_path / "lang"
    lang.mkdir()
    kaldilm_g_fst(setup, lang / "G.fst")
    shutil.copy(setup["words"], lang / "words.txt")
    common = ["rescore-nbest", "--lm-dir", str(setup["lm"]), "--words", str(setup["words"]), "--weight", "0.5",
              "--lattices", f"ark:gunzip -c {setup['decode']}/lat.1.gz|", "--n", "5"]
    outs = {}
    for name, old in (("arpa", setup["arpa"]), ("lang", lang)):
        outs[name] = tmp_path / f"{name}.tsv"
        assert main(common + ["--old-lm", str(old), "--use-phi", "true", "--out-nbest", str(outs[name])]) == 0
    a, b = _nbest_costs(outs["arpa"]), _nbest_costs(outs["lang"])
    assert a.keys() == b.keys() and len(a) >= 10
    for k in a:
        assert a[k][0] == b[k][0] and a[k][1:] == pytest.approx(b[k][1:], abs=1e-3)


def test_rescore_lattice_with_a_g_carpa_as_with_the_arpa_file(setup, tmp_path):
    from asr_lm_quant.kaldi.archive import read_lattice_dict
    syms = setup["symbols"]
    order, ngrams = carpa_layout.parse_arpa(setup["arpa"].read_text(), syms.word_to_id)
    (tmp_path / "G.carpa").write_bytes(carpa_layout.build_carpa(order, ngrams, bos=syms.id("<s>"),
                                                                eos=syms.id("</s>")))
    out = {}
    for name, old in (("arpa", setup["arpa"]), ("carpa", tmp_path / "G.carpa")):
        out[name] = tmp_path / f"{name}.ark"
        assert main(["rescore-lattice", "--old-lm", str(old), "--lm-dir", str(setup["lm"]), "--words",
                     str(setup["words"]), "--weight", "0.5", "--lattices",
                     f"ark:gunzip -c {setup['decode']}/lat.2.gz|", "--out-lattices", f"ark:{out[name]}"]) == 0
    a, b = read_lattice_dict(f"ark:{out['arpa']}"), read_lattice_dict(f"ark:{out['carpa']}")
    assert list(a) == list(b) and len(a) == 3
    for k in a:
        assert np.array_equal(a[k].olabel, b[k].olabel)
        assert np.allclose(a[k].graph, b[k].graph, atol=1e-3) and np.allclose(a[k].acoustic, b[k].acoustic)


def test_kenlm_commands_name_a_g_fst_given_for_an_arpa(setup, tmp_path, capsys):
    g = tmp_path / "G.fst"
    kaldilm_g_fst(setup, g)
    rc = main(["ngram-ppl", "--lm", str(g), "--text", str(tiny.CORPUS)])
    err = capsys.readouterr().err
    assert rc == 1 and f"{g}: is a G.fst, not an ARPA LM" in err and "Traceback" not in err
