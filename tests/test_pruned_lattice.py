"""Pruned lattice rescoring (``rescore-lattice --method pruned``) against exhaustive rescoring of every path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import best_path
from asr_lm_quant.kaldi.archive import read_lattice_dict, read_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.kaldi.nbest import nbest_paths
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.kaldi.synthetic import random_compact_lattice
from asr_lm_quant.ngram import ArpaLM, train_arpa
from asr_lm_quant.rescore.nnscore import make_scorer
from asr_lm_quant.rescore.pruned import PrunedOptions, PrunedStats, rescore_lattices_pruned

REPO = Path(__file__).resolve().parents[1]
from conftest import TINY as tiny  # noqa: E402

EXACT = PrunedOptions(order=1000, beam=1e9)  # every history its own state, nothing pruned
ACWT = 0.1


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("pruned"))


def _lstm(vocab, seed=0):
    from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
    torch.manual_seed(seed)
    return LSTMLM(LSTMConfig(vocab_size=len(vocab), d_embed=16, d_hidden=24, n_layers=2)).eval()


def _packed(model, vocab, root):
    """``model`` quantized to 4 bits, saved and loaded back packed (scored from its codes)."""
    from asr_lm_quant.quant.packed import load_lm_for_inference, save_packed
    from asr_lm_quant.quant.packed_modules import PackedLinear
    from asr_lm_quant.quant.plan import QuantPlan, group_names
    from asr_lm_quant.quant.ptq import quantize_model
    plan = quantize_model(model, QuantPlan.from_bits({n: 4 for n in group_names(model, None)}))
    save_packed(root, model, plan, vocab)
    packed, pvocab = load_lm_for_inference(root)
    assert any(isinstance(m, PackedLinear) for m in packed.modules())
    return packed, pvocab


@pytest.fixture(scope="module")
def scorers(setup, tmp_path_factory):
    import copy
    vocab = setup["vocab"]
    root = tmp_path_factory.mktemp("packed")
    out = {"transformer": make_scorer(setup["model"], vocab), "lstm": make_scorer(_lstm(vocab), vocab)}
    out["transformer-packed"] = make_scorer(*_packed(copy.deepcopy(setup["model"]), vocab, root / "t"))
    out["lstm-packed"] = make_scorer(*_packed(_lstm(vocab, seed=1), vocab, root / "l"))
    return out


def _exact(lat, scorer, old, syms, w):
    """Every path of ``lat`` with its exactly rescored costs: (words, acoustic, graph), sorted."""
    out = []
    for p in nbest_paths(lat, 10 ** 6, ACWT):
        ws = syms.words(p.words)
        out.append((tuple(p.words), round(p.acoustic_cost, 3),
                    p.graph_cost + w * (scorer.costs([ws])[0] - old.sentence_cost(ws))))
    return sorted(out)


def _paths(lat):
    return sorted((tuple(p.words), round(p.acoustic_cost, 3), p.graph_cost) for p in nbest_paths(lat, 10 ** 6, ACWT))


def _vocab(syms):
    """Label range for random lattices: <eps> and the words (not #0, <s>, </s>)."""
    return 1 + sum(w not in ("<eps>", "#0", "<s>", "</s>") for w in syms.words_in_order())


def _lattices(syms, n, seed, states=8):
    rng = np.random.default_rng(seed)
    return [(f"u{i}", random_compact_lattice(rng, num_frames=30, num_states=states, arcs_per_state=2.5,
                                             vocab=_vocab(syms), max_tid=200)) for i in range(n)]


def _assert_exact(items, scorer, old, syms, weights, opts=EXACT):
    got = dict(rescore_lattices_pruned(items, scorer, old, syms, weights, opts))
    for key, lat in items:
        for w in weights:
            ref, out = _exact(lat, scorer, old, syms, w), _paths(got[key][w])
            assert [r[:2] for r in ref] == [o[:2] for o in out], key  # the same paths ...
            np.testing.assert_allclose([r[2] for r in ref], [o[2] for o in out], atol=1e-4, rtol=0)  # ... costs
            bp = best_path(got[key][w], ACWT)
            best = min(ref, key=lambda r: r[2] + ACWT * r[1])
            assert bp.total_cost(ACWT) == pytest.approx(best[2] + ACWT * best[1], abs=1e-4)
    return got


# --- exactness -----------------------------------------------------------------------------------------------
def test_huge_beam_and_order_equal_exhaustive_rescoring(setup, scorers):
    syms, old = setup["symbols"], ArpaLM(setup["arpa"])
    items = _lattices(syms, 6, seed=0)
    got = _assert_exact(items, scorers["transformer"], old, syms, [0.0, 0.5, 0.8])
    # weight 0 gives back the input's paths and costs
    for key, lat in items:
        assert [(a, b, round(c, 3)) for a, b, c in _paths(got[key][0.0])] == \
               [(a, b, round(c, 3)) for a, b, c in _paths(lat)]


@pytest.mark.parametrize("kind", ["transformer-packed", "lstm", "lstm-packed"])
def test_exhaustive_with_every_model_kind(setup, scorers, kind):
    syms, old = setup["symbols"], ArpaLM(setup["arpa"])
    _assert_exact(_lattices(syms, 3, seed=1), scorers[kind], old, syms, [0.7])


def test_lattices_searched_together_equal_one_at_a_time(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["transformer"]
    items = _lattices(syms, 4, seed=2)
    opts = PrunedOptions(order=3, beam=4.0, batch_states=3)
    together = dict(rescore_lattices_pruned(items, sc, old, syms, [0.8], opts))
    for key, lat in items:
        (_, alone), = rescore_lattices_pruned([(key, lat)], sc, old, syms, [0.8], opts)
        assert alone[0.8].equals(together[key][0.8], rtol=1e-5)  # batch layout moves NN costs by float noise


def test_lookahead_changes_the_work_not_the_result(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["lstm"]
    items = _lattices(syms, 4, seed=7, states=10)
    outs, stats = [], []
    for k in (0, 4):
        st = PrunedStats()
        outs.append(dict(rescore_lattices_pruned(items, sc, old, syms, [0.8],
                                                 PrunedOptions(order=3, beam=6.0, lookahead=k), st)))
        stats.append(st)
    for key, _ in items:
        assert outs[0][key][0.8].equals(outs[1][key][0.8], rtol=1e-5)
    assert stats[0].expanded_states == stats[1].expanded_states
    assert stats[1].rounds <= stats[0].rounds


# --- approximation and pruning -------------------------------------------------------------------------------
def test_history_order_merges_states(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["transformer"]
    items = _lattices(syms, 4, seed=3, states=10)
    counts = {}
    for order in (2, 3, 1000):
        st = PrunedStats()
        out = dict(rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(order=order, beam=1e9), st))
        counts[order] = st.composed_states
        for key, lat in items:
            # merging never loses a path: every input word sequence is still there
            assert {p[0] for p in _paths(out[key][0.8])} == {p[0] for p in _paths(lat)}
    # order 2: at most one state per (lattice state, previous word or <s>)
    bound = sum(lat.num_states * _vocab(syms) for _, lat in items)
    assert counts[2] <= bound and counts[2] < counts[3] < counts[1000]


def _clear_lattices(syms, scorer, old, w, n_wanted, margin=3.0, seed=5):
    """Random lattices whose exactly rescored best word sequence beats every other by ``margin``."""
    rng = np.random.default_rng(seed)
    found = []
    while len(found) < n_wanted:
        lat = random_compact_lattice(rng, num_frames=30, num_states=12, arcs_per_state=2.5,
                                     vocab=_vocab(syms), max_tid=200)
        best = {}
        for words, ac, g in _exact(lat, scorer, old, syms, w):
            best[words] = min(best.get(words, np.inf), g + ACWT * ac)
        costs = sorted(best.values())
        if len(costs) > 20 and costs[1] - costs[0] > margin:
            found.append((f"c{len(found)}", lat, min(best, key=best.get)))
    return found


def test_small_beam_finds_a_clear_best_path_with_less_work(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["transformer"]
    clear = _clear_lattices(syms, sc, old, 0.8, 4)
    items = [(k, lat) for k, lat, _ in clear]
    full, small = PrunedStats(), PrunedStats()
    list(rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(order=1000, beam=1e9), full))
    out = dict(rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(order=3, beam=2.0), small))
    for key, _, words in clear:
        assert tuple(best_path(out[key][0.8], ACWT).words) == words, key
    assert small.expanded_states < full.expanded_states / 2
    assert small.nn_positions < full.nn_positions


def test_max_states_guard_still_gives_a_complete_path(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["transformer"]
    items = _lattices(syms, 3, seed=6, states=12)
    st = PrunedStats()
    out = dict(rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(max_states=2), st))
    for key, lat in items:
        p = best_path(out[key][0.8], ACWT)
        assert p is not None and tuple(p.words) in {q[0] for q in _paths(lat)}
    full = PrunedStats()
    list(rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(beam=1e9), full))
    # two states, then only as many as the best-first walk to a final state needs
    assert st.expanded_states <= sum(2 + lat.num_states for _, lat in items) < full.expanded_states


def test_empty_and_single_state_lattices(setup, scorers):
    syms, old, sc = setup["symbols"], ArpaLM(setup["arpa"]), scorers["transformer"]
    one = Lattice.from_arcs([], {0: (2.0, 5.0)})  # the empty sentence: only the end of sentence is scored
    out = dict(rescore_lattices_pruned([("e", Lattice.empty()), ("one", one)], sc, old, syms, [0.5], EXACT))
    assert out["e"][0.5].start < 0
    expect = 2.0 + 0.5 * (sc.costs([[]])[0] - old.sentence_cost([]))
    assert out["one"][0.5].final_graph[out["one"][0.5].start] == pytest.approx(expect, abs=1e-5)


def test_bad_options():
    for opts, msg in ((PrunedOptions(order=1), "--ngram-order 1"), (PrunedOptions(beam=0.0), "--beam"),
                      (PrunedOptions(max_states=0), "--max-states"), (PrunedOptions(lookahead=-1), "lookahead")):
        with pytest.raises(InputError, match=msg):
            opts.check()


# --- real lattice shapes -------------------------------------------------------------------------------------
def _words_setup(tmp_path, words_txt, seed=0):
    """A tiny Transformer and 3-gram ARPA over the words of ``words_txt``."""
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.text.vocab import Vocabulary
    syms = SymbolTable.load(words_txt)
    words = [w for w in syms.words_in_order() if w not in ("<eps>", "#0", "<s>", "</s>")]
    rng = np.random.default_rng(seed)
    text = tmp_path / "text"
    text.write_text("".join(" ".join(rng.choice(words, size=rng.integers(2, 9))) + "\n" for _ in range(200)))
    train_arpa(text, tmp_path / "lm.arpa", order=3)
    vocab = Vocabulary(["<s>", "<unk>"] + words[: max(2, len(words) - 2)])  # a couple of NN OOVs too
    torch.manual_seed(seed)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=64,
                                   dropout=0.0)).eval()
    return syms, make_scorer(model, vocab), ArpaLM(tmp_path / "lm.arpa")


def test_real_kaldi_text_lattice(shared_dir, tmp_path):
    d = shared_dir / "fixtures" / "kaldi-lattice-text"
    if not (d / "lattice.lat").exists():
        pytest.skip(f"no real Kaldi text lattice at {d}")
    syms, sc, old = _words_setup(tmp_path, d / "words.txt")
    items = list(read_lattices(f"ark:{d / 'lattice.lat'}"))
    _assert_exact(items, sc, old, syms, [0.5, 0.8])
    # Kaldi's order 4 with a beam: the rescored best path is still the exact one on this lattice
    ref = _exact(items[0][1], sc, old, syms, 0.8)
    (_, out), = rescore_lattices_pruned(items, sc, old, syms, [0.8], PrunedOptions(order=4, beam=5.0))
    assert tuple(best_path(out[0.8], ACWT).words) == min(ref, key=lambda r: r[2] + ACWT * r[1])[0]


def test_project_kaldi_fixture_lattices(tmp_path):
    d = REPO / "tests" / "fixtures" / "kaldi"
    syms, sc, old = _words_setup(tmp_path, d / "words.txt", seed=1)
    items = list(read_lattices(f"ark:{d / 'lat.txt'}"))
    assert len(items) == 2
    got = _assert_exact(items, sc, old, syms, [0.8])
    for key, lat in items:  # alignments travel with their arcs: every path still spans the input's frames
        frames = {len(p.alignment) for p in nbest_paths(lat, 1000, ACWT)}
        assert {len(p.alignment) for p in nbest_paths(got[key][0.8], 1000, ACWT)} == frames


# --- the command and the step script --------------------------------------------------------------------------
def test_command_pruned(setup, tmp_path):
    t = setup
    lat_in = f"ark:gunzip -c {t['decode']}/lat.1.gz|"
    rc = main(["rescore-lattice", "--method", "pruned", "--ngram-order", "1000", "--beam", "1e9", "--old-lm",
               str(t["arpa"]), "--lm-dir", str(t["lm"]), "--words", str(t["words"]), "--lattices", lat_in,
               "--weight", "0.5,0.8", "--out-lattices", f"ark:{tmp_path}/out.{{weight}}.ark",
               "--json", str(tmp_path / "s.json")])
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    inputs = read_lattice_dict(lat_in, kind="compact")
    assert summary["method"] == "pruned" and summary["utterances"] == len(inputs) and summary["nn_positions"] > 0
    sc, old, syms = make_scorer(t["model"], t["vocab"]), ArpaLM(t["arpa"]), t["symbols"]
    for w in (0.5, 0.8):
        out = read_lattice_dict(f"ark:{tmp_path}/out.{w}.ark", kind="compact")
        assert list(out) == list(inputs)
        for key, lat in out.items():
            ref = _exact(inputs[key], sc, old, syms, w)
            np.testing.assert_allclose([r[2] for r in ref], [p[2] for p in _paths(lat)], atol=1e-3, rtol=0)


@pytest.mark.parametrize("extra,msg", [(["--ngram-order", "1"], "--ngram-order 1: must be at least 2"),
                                       (["--check"], "--check applies to --method path-cover only"),
                                       (["--max-states", "0"], "--max-states")])
def test_command_errors(setup, tmp_path, capsys, extra, msg):
    t = setup
    rc = main(["rescore-lattice", "--method", "pruned", *extra, "--old-lm", str(t["arpa"]), "--lm-dir",
               str(t["lm"]), "--words", str(t["words"]), "--lattices", f"ark:gunzip -c {t['decode']}/lat.1.gz|",
               "--out-lattices", f"ark:{tmp_path}/o.ark"])
    err = capsys.readouterr().err
    assert rc != 0 and msg in err and "Traceback" not in err
    assert not (tmp_path / "o.ark").exists()


@pytest.mark.slow
def test_step_script_passes_the_method(setup, tmp_path):
    t = setup
    out = tmp_path / "decode_pruned"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    cmd = [str(REPO / "steps" / "lmrescore_lattice.sh"), "--method", "pruned", "--ngram-order", "3",
           "--weight", "0.7", "--skip-scoring", "true", str(t["arpa"]), str(t["lm"]), str(t["data"]),
           str(t["decode"]), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    for j in (1, 2):
        summary = json.loads((out / "log" / f"rescore.{j}.json").read_text())
        assert summary["method"] == "pruned" and summary["options"]["ngram_order"] == 3
    keys = [k for j in (1, 2) for k in read_lattice_dict(f"ark:gunzip -c {out}/lat.{j}.gz|")]
    assert sorted(keys) == sorted(t["utts"])
