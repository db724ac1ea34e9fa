"""Pruning n-best lists before NN scoring: hypotheses that cannot be the best at any setting of the sweep
are not scored, and the 1-best at every setting stays the one full scoring gives."""

import numpy as np
import pytest
import torch

from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.rescore.nbest import PruneSweep, score_hypotheses, score_pruned
from asr_lm_quant.rescore.nnscore import NNScorer
from asr_lm_quant.text.vocab import Vocabulary

V = 60
VOCAB = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(V - 2)])


class Ngram:
    """A stand-in old LM: a fixed cost per word, so the -w * ngram terms take part."""

    def sentence_cost(self, words):
        return float(sum(1.0 + (hash(x) % 7) * 0.5 for x in words) + 2.0)


def nbest(seed, utts=12, n=40):
    """Lists shaped like a decoder's: hypotheses that differ from the best in a few words, early or late, with
    first-pass costs that spread over tens of nats (and a few OOV words)."""
    rng = np.random.default_rng(seed)
    hyps = []
    for u in range(utts):
        base = [f"w{rng.integers(V - 2)}" for _ in range(rng.integers(1, 14))]
        seen = set()
        for r in range(n):
            h = list(base)
            for _ in range(rng.integers(0 if r == 0 else 1, 3)):
                pos = int(rng.integers(len(h)))
                h[pos] = "oov" if rng.random() < 0.05 else f"w{rng.integers(V - 2)}"
            if rng.random() < 0.2:
                h = h[:-1] if len(h) > 1 and rng.random() < 0.5 else h + [f"w{rng.integers(V - 2)}"]
            if tuple(h) in seen:
                continue
            seen.add(tuple(h))
            spread = 1.0 + 300.0 * len(seen) / n
            hyps.append(NbestHyp(f"u{u}", len(seen), h, float(100 + rng.normal(0, spread) + len(seen)),
                                 float(30 + rng.normal(0, 3) + 0.3 * len(seen))))
    return hyps


def best_per_setting(scored, sweep):
    """utterance -> the winning words at every (weight, lmwt, wip) of the sweep."""
    out = {}
    for w in sweep.weights:
        g = scored.new_graph(w)
        for m in sweep.lmwts:
            for p in sweep.wips:
                total = g + np.array([h.acoustic_cost / m + p * len(h.words) for h in scored.hyps])
                best = {}
                for h, t in zip(scored.hyps, total):
                    if h.utterance not in best or t < best[h.utterance][0]:
                        best[h.utterance] = (t, tuple(h.words))
                for u, (_, words) in best.items():
                    out[u, w, m, p] = words
    return out


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=2, d_ff=64, dropout=0.0)).eval()
    with torch.no_grad():
        model.embed.weight.mul_(3)  # NN costs that move the ranking
    return NNScorer(model, VOCAB, token_budget=512)


@pytest.mark.parametrize("seed,refs,oov_penalty", [(0, 1, 0.0), (1, 2, 0.0), (2, 1, 3.0), (3, 3, 1.5)])
def test_pruning_never_changes_the_one_best_in_the_sweep(scorer, seed, refs, oov_penalty):
    hyps = nbest(seed)
    sweep = PruneSweep(weights=[0.5, 0.8, 1.0], lmwts=[8, 10, 12, 14], wips=[0.0, 1.0], references=refs)
    full = score_hypotheses(hyps, scorer, Ngram(), oov_penalty=oov_penalty)
    full_positions = scorer.stats.positions
    pruned, ref_positions = score_pruned(hyps, scorer, Ngram(), sweep, oov_penalty=oov_penalty)
    assert 0 < len(pruned.hyps) < len(hyps)  # something was pruned, something kept
    assert scorer.stats.positions < full_positions
    assert best_per_setting(pruned, sweep) == best_per_setting(full, sweep)
    # the kept hypotheses carry the costs full scoring gives them
    index = {(h.utterance, h.rank): i for i, h in enumerate(full.hyps)}
    for h, c, o in zip(pruned.hyps, pruned.nn, pruned.ngram):
        i = index[h.utterance, h.rank]
        assert c == pytest.approx(full.nn[i], rel=1e-6) and o == full.ngram[i]


def test_a_wider_sweep_keeps_more(scorer):
    hyps = nbest(4)
    narrow = score_pruned(hyps, scorer, Ngram(), PruneSweep([0.8], [12], [0.0]))[0]
    wide = score_pruned(hyps, scorer, Ngram(), PruneSweep([0.3, 0.8], [6, 12, 20], [0.0, 2.0]))[0]
    assert len(narrow.hyps) < len(hyps)
    assert {(h.utterance, h.rank) for h in narrow.hyps} <= {(h.utterance, h.rank) for h in wide.hyps}


def test_beam_drops_hypotheses_far_behind_in_the_first_pass(scorer):
    hyps = nbest(5)
    sweep = PruneSweep([0.8], [10], [0.0])
    exact = score_pruned(hyps, scorer, Ngram(), sweep)[0]
    beam = score_pruned(hyps, scorer, Ngram(), PruneSweep([0.8], [10], [0.0], beam=1.0))[0]
    assert len(beam.hyps) < len(exact.hyps)
    for h in beam.hyps:  # every kept one lies within the beam of its utterance's first-pass best
        first = [x.lm_cost + x.acoustic_cost / 10 for x in hyps if x.utterance == h.utterance]
        assert h.lm_cost + h.acoustic_cost / 10 <= min(first) + 1.0 + 1e-9 or h.rank == 1


def test_rescore_nbest_command_prunes(tmp_path, scorer, capsys):
    from asr_lm_quant.cli import main
    from asr_lm_quant.kaldi.nbest import write_nbest
    from asr_lm_quant.nbest.read import read_nbest
    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.rescore.nbest import ScoredNbest
    save_lm(tmp_path / "lm", scorer.model, VOCAB)
    write_nbest(tmp_path / "in.tsv", nbest(6))
    common = ["rescore-nbest", "--lm-dir", str(tmp_path / "lm"), "--nbest", str(tmp_path / "in.tsv"),
              "--weight", "0.5,0.8"]
    assert main(common + ["--out-nbest", str(tmp_path / "all.{weight}.tsv")]) == 0
    assert main(common + ["--out-nbest", str(tmp_path / "pruned.{weight}.tsv"), "--prune-lmwt", "9:12",
                          "--json", str(tmp_path / "s.json")]) == 0
    import json
    summary = json.loads((tmp_path / "s.json").read_text())
    sweep = PruneSweep([0.5, 0.8], [9, 10, 11, 12])
    for w in (0.5, 0.8):
        every, kept = (read_nbest(tmp_path / f"{k}.{w:g}.tsv") for k in ("all", "pruned"))
        assert len(kept) == len(every) - summary["pruned"] < len(every)
        one = PruneSweep([0.0], sweep.lmwts, sweep.wips)  # the files hold the interpolated costs already
        as_scored = [ScoredNbest(h, np.zeros(len(h)), np.zeros(len(h))) for h in (every, kept)]
        assert best_per_setting(as_scored[0], one) == best_per_setting(as_scored[1], one)
    capsys.readouterr()
    assert main(common + ["--out-nbest", str(tmp_path / "x.{weight}.tsv"), "--prune-lmwt", "12:9"]) != 0
    assert "--prune-lmwt 12:9" in capsys.readouterr().err
    assert main(common + ["--out-nbest", str(tmp_path / "x.{weight}.tsv"), "--prune-beam", "3"]) != 0
    assert "needs --prune-lmwt" in capsys.readouterr().err
    assert not list(tmp_path.glob("x.*"))


def test_self_normalised_costs_are_bounded_and_pruning_stays_exact(scorer):
    """Without the normaliser a word's cost is minus its logit and can be negative: the bound then comes from
    the weights, and pruning still leaves every setting's 1-best as it was."""
    sn = NNScorer(scorer.model, VOCAB, token_budget=512, self_normalized=True)
    hyps = nbest(7)
    floor = sn.word_cost_floor()
    per_word = np.concatenate(sn.word_costs([h.words for h in hyps]))
    assert floor < 0 and per_word.min() < 0  # costs below 0 do occur, the bound lies under them
    assert per_word.min() >= floor
    sweep = PruneSweep(weights=[0.5, 1.0], lmwts=[8, 12], wips=[0.0, 1.0])
    full = score_hypotheses(hyps, sn, Ngram())
    pruned, _ = score_pruned(hyps, sn, Ngram(), sweep)
    assert best_per_setting(pruned, sweep) == best_per_setting(full, sweep)
    assert scorer.word_cost_floor() == 0.0
