"""NNScorer fast paths: chunked output layer with a padded last chunk, the bf16 output layer with the bias and a
per-node shift folded into the product, the bf16 weight cache, and the benchmark's N-best generators."""

import copy
import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.rescore.nnscore import NNScorer
from asr_lm_quant.text.vocab import Vocabulary

WORDS = ["<s>", "<unk>"] + [f"w{i}" for i in range(300)]


def make_lm(norm="post", scale_out=1.0, seed=4):
    torch.manual_seed(seed)
    vocab = Vocabulary(WORDS)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48,
                                   dropout=0.0, norm=norm, tie_embeddings=False)).eval()
    with torch.no_grad():
        model.out.weight.uniform_(-0.5, 0.5).mul_(scale_out)
        model.out.bias.uniform_(-3, 3)  # a bias of the size a trained model has for frequent words
    return model, vocab


def reference(model, vocab, hyps):
    """float64 costs, each sentence on its own through the model's own forward."""
    m64 = copy.deepcopy(model).double()
    out = []
    for words in hyps:
        ids = [vocab.bos] + vocab.encode(words)
        with torch.no_grad():
            logp = torch.log_softmax(m64(torch.tensor([ids])), dim=-1)[0]
        out.append(-sum(float(logp[i, t]) for i, t in enumerate(ids[1:] + [vocab.eos])))
    return np.array(out)


def nbest(seed=2, utts=4, n=12):
    rng = random.Random(seed)
    out = []
    for _ in range(utts):
        base = [f"w{rng.randrange(300)}" for _ in range(rng.randrange(3, 15))]
        for _ in range(n):
            h = list(base)
            h[rng.randrange(len(h))] = f"w{rng.randrange(300)}"
            out.append(h)
    return out


@pytest.mark.parametrize("norm,bytes_,chunk,threads", [
    ("pre", 1, 32, 1), ("post", 1, 32, 1), ("post", len(WORDS) * 4 * 96, 96, 1),
    ("pre", len(WORDS) * 4 * 96, 96, 2)])  # one thread: normaliser in pieces; several: whole chunks
def test_many_output_chunks_with_a_padded_last_one_are_exact(norm, bytes_, chunk, threads):
    """Chunks of 32 or 96 rows, so the unique nodes span several chunks and the last is padded."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check_chunks(norm, bytes_, chunk)
    finally:
        torch.set_num_threads(before)


def check_chunks(norm, bytes_, chunk):
    model, vocab = make_lm(norm)
    hyps = nbest()
    s = NNScorer(model, vocab, logits_bytes=bytes_)
    assert s.logit_chunk == chunk
    got = s.costs(hyps)
    assert s.stats.positions > chunk and s.stats.positions % chunk  # several chunks, a partial last one
    np.testing.assert_allclose(got, reference(model, vocab, hyps), rtol=0, atol=1e-4)
    per = s.word_costs(hyps)
    np.testing.assert_allclose([p.sum() for p in per], got, atol=1e-9)


def test_bf16_output_layer_keeps_large_logits_accurate():
    """Logits of +-45: the product of the bfloat16 inputs, if its result were rounded to bfloat16, would be off
    by ~0.1 nat in the normaliser; with the bias and the shift folded into the product it matches the exact
    product of the same inputs to ~2^-9 times the distance of the top logits from the shift."""
    model, vocab = make_lm(scale_out=6.0)
    s = NNScorer(model, vocab, bf16=True)
    torch.manual_seed(0)
    h = torch.randn(70, 32)
    W, b = model.out.weight.detach(), model.out.bias.detach()
    with torch.inference_mode():
        shift = (h @ W.t() + b).max(dim=-1).values - 1.5  # near the largest logit, as a node's best target is
        got = s._log_normalisers(h, s._weights(), shift).double()
    lg = h.double() @ W.double().t()
    assert float(lg.abs().max()) > 40
    same_inputs = torch.logsumexp(h.bfloat16().double() @ W.bfloat16().double().t() + b.double(), dim=-1)
    assert float((got - same_inputs).abs().max()) < 0.01
    rounded = torch.logsumexp((h.bfloat16() @ W.bfloat16().t()).double() + b.double(), dim=-1)
    assert float((rounded - same_inputs).abs().max()) > 0.05
    exact = torch.logsumexp(lg + b.double(), dim=-1)
    assert float((got - exact).abs().max()) < float((rounded - exact).abs().max())


def test_bf16_costs_close_to_reference():
    model, vocab = make_lm(scale_out=4.0)
    hyps = nbest()
    ref = reference(model, vocab, hyps)
    got = NNScorer(model, vocab, bf16=True, logits_bytes=1).costs(hyps)
    assert np.all(np.abs(got - ref) <= 2e-3 * ref)
    assert np.abs(got - ref).max() > 0  # bf16 really ran


def test_bf16_weight_cache_follows_parameter_changes():
    model, vocab = make_lm()
    hyps = nbest(utts=2, n=4)
    s = NNScorer(model, vocab, bf16=True)
    before = s.costs(hyps)
    w = s._weights()
    assert s._weights() is w  # unchanged parameters: cached
    with torch.no_grad():
        model.layers[0].ff.fc1.weight.mul_(3.0)
        model.out.bias[vocab.eos] += 2.0
    assert s._weights() is not w
    after = s.costs(hyps)
    ref = reference(model, vocab, hyps)
    assert np.all(np.abs(after - ref) <= 2e-3 * ref)
    assert np.abs(after - before).min() > 0.05


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_nn_scoring.py"
    spec = importlib.util.spec_from_file_location("bench_nn_scoring", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("shape", ["lattice", "edits"])
def test_bench_nbest_lists_are_distinct_and_deterministic(shape):
    make = _bench().SHAPES[shape]
    for n, seed in ((1, 1), (20, 2), (100, 3)):
        a = make(random.Random(seed), 30000, n)
        assert a == make(random.Random(seed), 30000, n)
        assert len(a) == n and len({tuple(h) for h in a}) == n
        assert all(all(w.startswith("w") and 2 <= int(w[1:]) < 30000 for w in h) for h in a)


def test_bench_lattice_lists_share_more_than_independent_edits():
    bench = _bench()

    def sharing(lists):
        tokens = nodes = 0
        for hyps in lists:
            prev = ()
            for h in sorted(tuple(h) for h in hyps):
                lcp = 0
                while lcp < min(len(h), len(prev)) and h[lcp] == prev[lcp]:
                    lcp += 1
                tokens, nodes, prev = tokens + len(h), nodes + len(h) - lcp, h
        return tokens / nodes

    rng = random.Random(9)
    lattice = [bench.make_nbest_lattice(rng, 30000, 100) for _ in range(5)]
    edits = [bench.make_nbest(rng, 30000, 100) for _ in range(5)]
    assert sharing(lattice) > sharing(edits) > 1.5
    # the best path is the base sentence; the others differ from it in a few positions
    for hyps in lattice:
        base = hyps[0]
        assert all(abs(len(h) - len(base)) <= 6 for h in hyps)


def test_bench_markdown_table():
    bench = _bench()
    row = {"seconds": 2.0, "cpu_seconds": 1.5, "words_per_s": 500.0, "speedup_vs_naive": 3.25,
           "cpu_speedup_vs_naive": 3.5, "peak_rss_growth_mb": 120.0, "max_abs_cost_diff_vs_naive": 0.00031}
    res = {"config": {"shape": "lattice", "threads": 1, "token_budget": 4096, "max_row": 256},
           "nbest": {"100": {"trie_bf16": row, "naive": {"error": "killed"}}}}
    lines = bench.markdown(res).splitlines()
    assert lines[0].startswith("NN scoring, shape lattice, 1 thread(s)")
    assert "| 100 | trie_bf16 | 2.00 | 1.50 | 500 | 3.25 | 3.50 | 120 | 0.0003 |" in lines
    assert "| 100 | naive | error: killed |||||||" in lines
