"""NN LM hypothesis costs: packed prefix tries, length buckets, token budget, OOVs, bf16, per-word costs."""

import copy
import random

import numpy as np
import pytest
import torch

from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.rescore.nnscore import NNScorer, naive_costs
from asr_lm_quant.text.vocab import Vocabulary

WORDS = ["<s>", "<unk>"] + [f"w{i}" for i in range(40)]


@pytest.fixture(scope="module", params=["pre", "post"])
def lm(request):
    torch.manual_seed(3)
    vocab = Vocabulary(WORDS)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48,
                                   dropout=0.0, norm=request.param)).eval()
    return model, vocab


@pytest.fixture(scope="module")
def hyps():
    """N-best-like lists: a few base sentences, each with variants differing in one or two words."""
    rng = random.Random(5)
    out = [[]]  # the empty hypothesis: only the end of sentence is scored
    for _ in range(6):
        base = [f"w{rng.randrange(40)}" for _ in range(rng.randrange(1, 14))]
        for _ in range(7):
            h = list(base)
            for _ in range(rng.randrange(0, 3)):
                h[rng.randrange(len(h))] = f"w{rng.randrange(40)}"
            out.append(h)
    out.append(["w1", "never-seen", "w2"])  # an OOV
    return out


def reference(model, vocab, words):
    """float64 cost of one sentence, computed on its own with the model's own forward."""
    m64 = copy.deepcopy(model).double()
    ids = [vocab.bos] + vocab.encode(words)
    with torch.no_grad():
        logp = torch.log_softmax(m64(torch.tensor([ids])), dim=-1)[0]
    targets = ids[1:] + [vocab.eos]
    return -sum(float(logp[i, t]) for i, t in enumerate(targets))


@pytest.fixture(scope="module")
def ref(lm, hyps):
    model, vocab = lm
    return np.array([reference(model, vocab, h) for h in hyps])


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("budget,max_row", [(4096, 256), (48, 24), (15, 15)])
def test_costs_equal_per_sentence_reference(lm, hyps, ref, share, budget, max_row):
    model, vocab = lm
    s = NNScorer(model, vocab, token_budget=budget, max_row=max_row, share_prefixes=share)
    got = s.costs(hyps)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    # the budget holds for every batch (no hypothesis here is longer than it)
    assert s.stats.max_batch_positions <= budget
    assert s.stats.hypotheses == len(hyps)
    if share:  # shared prefixes are computed once: fewer positions than tokens
        assert s.stats.positions < sum(len(h) + 1 for h in hyps)
    else:
        assert s.stats.positions == sum(len(h) + 1 for h in hyps)


def test_prefix_sharing_computes_each_prefix_once(lm):
    model, vocab = lm
    hyps = [["w1", "w2", "w3", "w4"], ["w1", "w2", "w3", "w5"], ["w1", "w2", "w6"], ["w1", "w2", "w3", "w4"]]
    s = NNScorer(model, vocab)
    s.costs(hyps)
    # trie: <s> w1 w2 {w3 {w4, w5}, w6} = 7 nodes for 4 hypotheses of 19 tokens
    assert s.stats.positions == 7


def test_oov_scored_as_unk_and_counted(lm):
    model, vocab = lm
    s = NNScorer(model, vocab)
    a = s.costs([["w1", "zzz", "w2"], ["w1", "<unk>", "w2"]])
    assert a[0] == pytest.approx(a[1], abs=1e-9)
    s.costs([["w1", "zzz", "qqq"], "w3 w4"])
    assert s.stats.oov == 2 and s.stats.words == 5


def test_word_costs_sum_to_totals(lm, hyps, ref):
    model, vocab = lm
    per = NNScorer(model, vocab, token_budget=40, max_row=20).word_costs(hyps)
    assert [len(p) for p in per] == [len(h) + 1 for h in hyps]
    np.testing.assert_allclose([p.sum() for p in per], ref, atol=1e-4)
    assert all((p > 0).all() for p in per)  # each is a negated log probability


def test_bf16_within_tolerance(lm, hyps, ref):
    """bf16 autocast keeps the log-softmax in float32: costs stay within 1% (and 0.1 nat per word)."""
    model, vocab = lm
    got = NNScorer(model, vocab, bf16=True).costs(hyps)
    n = np.array([len(h) + 1 for h in hyps])
    assert np.all(np.abs(got - ref) <= np.maximum(0.01 * ref, 0.1 * n))


def test_naive_baseline_agrees(lm, hyps, ref):
    model, vocab = lm
    np.testing.assert_allclose(naive_costs(model, vocab, hyps), ref, atol=1e-4)


def test_many_paths_stay_within_the_budget(lm):
    """2000 hypotheses of one utterance: batches never exceed the budget."""
    model, vocab = lm
    rng = random.Random(1)
    hyps = [[f"w{rng.randrange(40)}" for _ in range(rng.randrange(3, 12))] for _ in range(2000)]
    s = NNScorer(model, vocab, token_budget=512, max_row=128)
    out = s.costs(hyps)
    assert s.stats.max_batch_positions <= 512 and s.stats.batches > 10
    assert np.isfinite(out).all()
    sample = [0, 777, 1999]
    np.testing.assert_allclose(out[sample], [reference(model, vocab, hyps[i]) for i in sample], atol=1e-4)


def test_too_long_hypothesis_is_an_error(lm):
    model, vocab = lm
    with pytest.raises(ValueError, match="max_len"):
        NNScorer(model, vocab).costs([["w1"] * (model.cfg.max_len + 1)])
