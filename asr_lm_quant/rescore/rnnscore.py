"""LSTM LM costs of whole hypotheses, with shared prefixes computed once.

Costs are those of :mod:`asr_lm_quant.rescore.nnscore` (``<s> w1 .. wn`` predicting ``w1 .. wn <s>``, natural
log, negated). How the work is laid out:

- Hypotheses are sorted by their token ids and taken in groups of at most ``token_budget``; each group is a
  prefix trie (``share_prefixes=False``: one path per hypothesis).
- The trie is run one depth at a time: every node of a depth is one row of a batched LSTM step, started from
  its parent's state (so a shared prefix is computed once, and a node's state depends on its own history
  only: the costs are those of a separate run of each hypothesis).
- From each node's output, the output layer gives the log-normaliser; the cost of each child's word and of
  ending the sentence there are read from the same log-softmax, in chunks of at most ``logits_bytes``.

Memory is bounded by the group: states of two depths of at most ``token_budget`` nodes each.
``bf16=True`` runs the LSTM steps under bfloat16 autocast (the output layer stays float32).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from asr_lm_quant.lm.lstm import LSTMLM
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.rescore.scorer import ScoreStats, WordScorer
from asr_lm_quant.text.vocab import Vocabulary


class LSTMScorer(WordScorer):
    """Cost every hypothesis with an :class:`~asr_lm_quant.lm.lstm.LSTMLM`.

    ``token_budget``: most hypotheses in one trie, and so most rows of one LSTM step.
    ``logits_bytes``: memory for one chunk of output-layer logits."""

    def __init__(self, model: LSTMLM, vocab: Vocabulary, *, device: str | torch.device | None = None,
                 token_budget: int = 4096, share_prefixes: bool = True, bf16: bool = False,
                 logits_bytes: int = 64 << 20, progress: bool = False):
        if len(vocab) != model.cfg.vocab_size:
            raise ValueError(f"vocabulary has {len(vocab)} words, the model {model.cfg.vocab_size}")
        if token_budget < 1:
            raise ValueError("token_budget must be >= 1")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.token_budget = int(token_budget)
        self.share_prefixes = share_prefixes
        self.bf16 = bf16
        self.logit_rows = max(1, int(logits_bytes) // (4 * model.cfg.vocab_size))
        self.progress = progress
        self.stats = ScoreStats()

    def costs_from_ids(self, seqs: list[list[int]], stats: ScoreStats | None = None,
                       per_token: list | None = None) -> np.ndarray:
        """Like :meth:`costs` for token id lists that start with ``<s>`` (no end-of-sentence).
        ``per_token``: arrays of ``len(seq)`` to receive each word's and the end's cost."""
        stats = stats if stats is not None else ScoreStats(hypotheses=len(seqs))
        total = np.zeros(len(seqs), dtype=np.float64)
        order = sorted(range(len(seqs)), key=lambda i: seqs[i]) if self.share_prefixes else list(range(len(seqs)))
        with progress_bar(total=len(seqs), unit="hyp", desc="LSTM LM", enabled=self.progress) as bar:
            for g in range(0, len(order), self.token_budget):
                group = order[g:g + self.token_budget]
                self._score_group([seqs[i] for i in group], group, total, stats, per_token)
                bar.update(len(group))
        return total

    def _trie(self, seqs):
        """Nodes (token, parent, depth) of the group's prefix trie and each hypothesis's path of nodes."""
        token, parent, depth, paths = [], [], [], []
        child_of: dict = {}
        for n, seq in enumerate(seqs):
            node, path = -1, []
            for d, t in enumerate(seq):
                key = (node, t) if self.share_prefixes else (n, d)
                child = child_of.get(key)
                if child is None:
                    child = child_of[key] = len(token)
                    token.append(t)
                    parent.append(node)
                    depth.append(d)
                path.append(child)
                node = child
            paths.append(path)
        return np.asarray(token, np.int64), np.asarray(parent, np.int64), np.asarray(depth, np.int64), paths

    @torch.inference_mode()
    def _score_group(self, seqs, hyp_ids, total, stats: ScoreStats, per_token):
        if not seqs:
            return
        token, parent, depth, paths = self._trie(seqs)
        n_nodes = len(token)
        by_depth = np.argsort(depth, kind="stable")
        levels = np.split(by_depth, np.cumsum(np.bincount(depth))[:-1])
        row_of = np.empty(n_nodes, np.int64)  # a node's row within its depth
        for ids in levels:
            row_of[ids] = np.arange(len(ids))
        arrive = np.zeros(n_nodes)  # -log p(node's word | its parent's history)
        end = np.zeros(n_nodes)     # -log p(end of sentence | the node's history)
        m, dev, eos = self.model, self.device, self.vocab.eos
        H = m.cfg.d_hidden
        autocast = (torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        state = None
        for d, ids in enumerate(levels):
            n = len(ids)
            x = m.embed(torch.from_numpy(token[ids]).to(dev))
            if state is None:
                prev = [(torch.zeros(n, H, device=dev), torch.zeros(n, H, device=dev))] * len(m.layers)
            else:
                rows = torch.from_numpy(row_of[parent[ids]]).to(dev)
                prev = [(h[rows], c[rows]) for h, c in state]
            state = []
            with autocast:
                for layer, (h, c) in zip(m.layers, prev):
                    h, c = layer.step(layer.ih(x), h, c)
                    state.append((h, c))
                    x = h
            top = x.float()
            nxt = levels[d + 1] if d + 1 < len(levels) else np.zeros(0, np.int64)
            nxt_row = row_of[parent[nxt]]
            for s in range(0, n, self.logit_rows):
                e = min(n, s + self.logit_rows)
                logp = torch.log_softmax(m.out(top[s:e]).float(), dim=-1)
                end[ids[s:e]] = -logp[:, eos].double().cpu().numpy()
                kids = nxt[(nxt_row >= s) & (nxt_row < e)]
                if len(kids):
                    r = torch.from_numpy(row_of[parent[kids]] - s).to(dev)
                    t = torch.from_numpy(token[kids]).to(dev)
                    arrive[kids] = -logp[r, t].double().cpu().numpy()
            stats.batches += 1
            stats.max_batch_positions = max(stats.max_batch_positions, n)
        stats.positions += n_nodes
        stats.padded_positions += n_nodes
        for h, path in zip(hyp_ids, paths):
            costs = np.append(arrive[path[1:]], end[path[-1]])
            total[h] = costs.sum()
            if per_token is not None:
                per_token[h][:] = costs
