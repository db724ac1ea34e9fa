"""Padding and attention layout change no cost: tree attention in query blocks equals the dense tree mask, and a
hypothesis costs the same whatever else shares its batch (rows of other lengths, padding, output chunks)."""

import copy
import random

import numpy as np
import pytest
import torch

from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.rescore.nnscore import NNScorer, _TreeBlocks
from asr_lm_quant.text.vocab import Vocabulary

WORDS = ["<s>", "<unk>"] + [f"w{i}" for i in range(50)]


@pytest.fixture(scope="module", params=["pre", "post"])
def lm(request):
    torch.manual_seed(7)
    vocab = Vocabulary(WORDS)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=32, n_layers=2, n_heads=4, d_ff=48, dropout=0.0,
                                   norm=request.param)).eval()
    return model, vocab


def nbest(seed, utts, n, min_len=3, max_len=25):
    """Lists whose hypotheses share long prefixes: rows of up to ``max_row`` nodes, trees a few levels deep."""
    rng = random.Random(seed)
    out = []
    for _ in range(utts):
        base = [f"w{rng.randrange(50)}" for _ in range(rng.randrange(min_len, max_len))]
        for _ in range(n):
            h = list(base)
            for _ in range(rng.randrange(1, 3)):
                h[rng.randrange(len(h))] = f"w{rng.randrange(50)}"
            out.append(h)
    return out


def reference(model, vocab, hyps):
    m64 = copy.deepcopy(model).double()
    out = []
    for words in hyps:
        ids = [vocab.bos] + vocab.encode(words)
        with torch.no_grad():
            logp = torch.log_softmax(m64(torch.tensor([ids])), dim=-1)[0]
        out.append(-sum(float(logp[i, t]) for i, t in enumerate(ids[1:] + [vocab.eos])))
    return np.array(out)


def random_tree_rows(rng, B, L):
    """Depth-first parent lists of random tries of ``n <= L`` nodes, and the dense tree mask (padding sees
    itself only), as NNScorer lays rows out."""
    parents, mask = [], np.zeros((B, L, L), dtype=bool)
    mask[:, np.arange(L), np.arange(L)] = True
    for b in range(B):
        n = L if b == 0 else rng.randrange(2, L + 1)
        par, path = [-1], [0]
        for j in range(1, n):
            keep = rng.randrange(1, len(path) + 1) if rng.random() < 0.2 else len(path)  # mostly go deeper
            path = path[:keep]
            par.append(path[-1])
            path.append(j)
        for j in range(1, n):
            mask[b, j, :j] = mask[b, par[j], :j]
        parents.append(par)
    return parents, mask


@pytest.mark.parametrize("block", [4, 8, 32])
def test_blocks_equal_dense_tree_attention(block):
    rng = random.Random(block)
    B, L, H, dh = 5, 96, 3, 8
    parents, mask = random_tree_rows(rng, B, L)
    blocks = _TreeBlocks.build(mask, parents, block)
    assert blocks is not None and blocks.scores < B * L * L
    q, k, v = (torch.randn(B, H, L, dh, dtype=torch.float64) for _ in range(3))
    dense_mask = torch.zeros(B, 1, L, L, dtype=torch.float64).masked_fill_(~torch.from_numpy(mask)[:, None],
                                                                           float("-inf"))
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask)
    got = blocks.to(torch.float64, "cpu").attend(q, k, v)
    torch.testing.assert_close(got, dense, rtol=0, atol=1e-12)


def test_deep_trees_fall_back_to_the_dense_mask():
    L = 40
    parents = [list(range(-1, L - 1))]  # one chain: every block needs all earlier nodes
    mask = np.tril(np.ones((1, L, L), dtype=bool))
    assert _TreeBlocks.build(mask, parents, 8) is None


@pytest.mark.parametrize("bf16", [False, True])
def test_block_attention_gives_the_dense_costs(lm, bf16):
    model, vocab = lm
    hyps = nbest(1, utts=6, n=15)
    dense = NNScorer(model, vocab, max_row=128, attention_block=0, bf16=bf16)
    blocked = NNScorer(model, vocab, max_row=128, attention_block=16, bf16=bf16)
    a, b = dense.costs(hyps), blocked.costs(hyps)
    # the blocks were used, on far fewer query-key pairs
    assert blocked.stats.attention_scores < 0.6 * dense.stats.attention_scores
    assert np.abs(a - b).max() < (1e-5 if not bf16 else 2e-2)
    if not bf16:
        assert np.abs(b - reference(model, vocab, hyps)).max() < 1e-4


def test_padding_and_batch_company_change_no_cost(lm):
    """The same hypotheses alone, then among others that make longer rows (so their rows are padded in their
    batch, sorted differently, and their nodes land in other output chunks)."""
    model, vocab = lm
    mine = nbest(2, utts=2, n=6, max_len=8)
    others = nbest(3, utts=5, n=12, min_len=15, max_len=30)
    alone = NNScorer(model, vocab, max_row=64, token_budget=256).costs(mine)
    ref = reference(model, vocab, mine)
    for budget, max_row, block, chunk_bytes in ((256, 64, 32, 64 << 20), (4096, 256, 16, len(WORDS) * 4 * 32),
                                                (600, 200, 0, len(WORDS) * 4 * 64)):
        s = NNScorer(model, vocab, token_budget=budget, max_row=max_row, attention_block=block,
                     logits_bytes=chunk_bytes)
        mixed = s.costs(others[:20] + mine + others[20:])
        assert s.stats.padded_positions > s.stats.positions  # there is padding
        got = mixed[20:20 + len(mine)]
        assert np.abs(got - alone).max() < 1e-5, (budget, max_row, block)
        assert np.abs(got - ref).max() < 1e-4
