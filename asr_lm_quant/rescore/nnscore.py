"""NN LM costs of whole hypotheses, batched by a token budget, with shared prefixes computed once.

The cost of a hypothesis ``w1 .. wn`` is ``-sum_k log p(w_k | <s> w1 .. w_{k-1}) - log p(<s> | <s> w1 .. wn)``
(natural log; ``<s>`` is both the start and the end of a sentence; an OOV word is scored as ``<unk>``).

How the work is laid out (``share_prefixes=True``):

- Hypotheses from any number of utterances are sorted lexicographically by their token ids, so each one
  shares its longest common prefix with its predecessor.
- Consecutive hypotheses are packed into *rows* of at most ``max_row`` trie nodes: a row is the prefix
  trie of the hypotheses it holds, laid out depth first. Every node is one model position; its position
  encoding is its depth and it attends to its ancestors only (a tree mask), so the row computes each
  shared prefix once and gives exactly the probabilities a separate run of each hypothesis would give.
- Rows are sorted by length and stacked into batches of at most ``token_budget`` positions (padding
  included); the output layer runs in chunks so the ``[positions, vocab]`` logits never exist at once.
  Peak memory is therefore bounded by the budget, whatever the number of hypotheses.
- Output layer: each scored token's logit is a float32 dot product of its node's hidden state with one
  row of the output matrix; the full ``[nodes, vocab]`` product is needed only for the normaliser
  (log-sum-exp), once per distinct node, in chunks of 32-row multiples.

``bf16=True``: bfloat16 matrix products with float32 accumulation, from bfloat16 copies of the Linear
weights cached while the parameters are unchanged; LayerNorms, the residual stream, the target logits and
the normaliser's sums stay float32. The output product is the one place where rounding its *result* to
bfloat16 would hurt (errors of ~2^-9 times the logit), so the bias and a per-node shift near the largest
logit are folded into it as extra columns (see ``_log_normalisers``). Where it pays: CPUs with AVX512-BF16
(AMD Zen 4, Intel Cooper Lake and later; Intel AMX is faster still) run bfloat16 products ~2.3x faster
than float32; costs move by ~1e-3 relative.

With ``share_prefixes=False`` each row is one hypothesis (a causal mask), which is what the benchmark
compares against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from asr_lm_quant.lm.model import TransformerLM, target_logits
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.quant.packed_modules import PackedLinear
from asr_lm_quant.rescore.scorer import ScoreStats, WordScorer
from asr_lm_quant.text.vocab import Vocabulary


@dataclass
class _Row:
    tokens: list = field(default_factory=list)   # token id per node
    depth: list = field(default_factory=list)    # position (0 = <s>) per node
    parent: list = field(default_factory=list)   # parent node index, -1 for the root
    hyps: list = field(default_factory=list)     # hypothesis indices
    paths: list = field(default_factory=list)    # node index per position of each hypothesis


class NNScorer(WordScorer):
    """Cost every hypothesis with a :class:`TransformerLM`.

    ``token_budget``: most model positions (padding included) in one forward batch.
    ``max_row``: most trie nodes in one packed row (attention cost grows with its square).
    ``bf16``: bfloat16 matrix products with float32 accumulation (see the module notes).
    ``logits_bytes``: memory for one chunk of output-layer logits.
    ``attention_block``: tree attention in blocks of this many query nodes, each over its nodes and the
    ancestors of its first node only (see :class:`_TreeBlocks`); 0: over the whole row.
    ``self_normalized``: skip the normaliser, a word's cost is minus its logit (for a model trained with a
    self-normalisation term, whose log Z stays near 0): only the scored words' rows of the output matrix are
    used, one dot product per scored token instead of the vocabulary-wide product and log-sum-exp.
    """

    def __init__(self, model: TransformerLM, vocab: Vocabulary, *, device: str | torch.device | None = None,
                 token_budget: int = 4096, max_row: int = 256, share_prefixes: bool = True,
                 bf16: bool = False, logits_bytes: int = 64 << 20, progress: bool = False,
                 self_normalized: bool = False, attention_block: int = 32):
        if len(vocab) != model.cfg.vocab_size:
            raise ValueError(f"vocabulary has {len(vocab)} words, the model {model.cfg.vocab_size}")
        if token_budget < 1 or max_row < 2:
            raise ValueError("token_budget must be >= 1 and max_row >= 2")
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.token_budget = int(token_budget)
        self.max_row = int(min(max_row, token_budget)) if share_prefixes else int(token_budget)
        self.share_prefixes = share_prefixes
        self.bf16 = bf16
        self.self_normalized = self_normalized
        self.attention_block = int(attention_block)
        # Output-layer rows per chunk: a multiple of 32 (odd row counts make oneDNN's bf16 matmul far
        # slower); the chunk's logits fit in logits_bytes.
        per_row = (2 if bf16 else 4) * model.cfg.vocab_size
        self.logit_chunk = max(32, int(logits_bytes // per_row) // 32 * 32)
        self.logits_bytes = int(logits_bytes)
        self.progress = progress
        self.stats = ScoreStats()
        self._cache = None  # (parameter key, _Weights) in bf16 mode

    def costs_from_ids(self, seqs: list[list[int]], stats: ScoreStats | None = None,
                       per_token: list | None = None) -> np.ndarray:
        """Like :meth:`costs` for token id lists that start with ``<s>`` (no end-of-sentence).
        ``per_token``: arrays of ``len(seq)`` to receive each word's and the end's cost."""
        stats = stats if stats is not None else ScoreStats(hypotheses=len(seqs))
        longest = max((len(s) for s in seqs), default=0)
        if longest > self.model.cfg.max_len:
            raise ValueError(f"a hypothesis of {longest - 1} words exceeds the model's max_len "
                             f"{self.model.cfg.max_len}")
        total = np.zeros(len(seqs), dtype=np.float64)
        if not seqs:
            return total
        rows = self._pack(seqs)
        rows.sort(key=lambda r: len(r.tokens))
        bar = progress_bar(total=len(seqs), unit="hyp", desc="NN LM", enabled=self.progress, smoothing=0.1)
        try:
            for batch in self._batches(rows):
                self._run(batch, total, stats, per_token)
                bar.update(sum(len(r.hyps) for r in batch))
        finally:
            bar.close()
        return total

    # -- layout ---------------------------------------------------------------------------------------
    def _pack(self, seqs) -> list[_Row]:
        order = sorted(range(len(seqs)), key=(lambda i: seqs[i]) if self.share_prefixes
                       else (lambda i: len(seqs[i])))
        rows: list[_Row] = []
        row = _Row()
        prev_path: list[int] = []
        prev_seq: list[int] = []
        for i in order:
            seq = seqs[i]
            if not self.share_prefixes:
                rows.append(_Row(tokens=list(seq), depth=list(range(len(seq))),
                                 parent=list(range(-1, len(seq) - 1)), hyps=[i],
                                 paths=[list(range(len(seq)))]))
                continue
            lcp = 0
            if row.tokens:
                m = min(len(seq), len(prev_seq))
                while lcp < m and seq[lcp] == prev_seq[lcp]:
                    lcp += 1
            if row.tokens and len(row.tokens) + len(seq) - lcp > self.max_row:
                rows.append(row)
                row, lcp = _Row(), 0
            path = prev_path[:lcp]
            for d in range(lcp, len(seq)):
                row.tokens.append(seq[d])
                row.depth.append(d)
                row.parent.append(path[-1] if path else -1)
                path.append(len(row.tokens) - 1)
            row.hyps.append(i)
            row.paths.append(path)
            prev_path, prev_seq = path, seq
        if row.tokens:
            rows.append(row)
        return rows

    def _batches(self, rows):
        """Consecutive rows whose padded size fits the token budget (a longer row goes alone). A batch of at
        least 256 positions also ends where the next row would make more than a fifth of it padding."""
        batch: list[_Row] = []
        real = 0
        for r in rows:  # sorted by length, so the last row is the longest
            n = len(r.tokens)
            padded = (len(batch) + 1) * n
            if batch and (padded > self.token_budget or (real >= 256 and padded > 1.25 * (real + n))):
                yield batch
                batch, real = [], 0
            batch.append(r)
            real += n
        if batch:
            yield batch

    # -- compute --------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, batch: list[_Row], total: np.ndarray, stats: ScoreStats, per_token=None):
        B, L = len(batch), max(len(r.tokens) for r in batch)
        tokens = np.zeros((B, L), dtype=np.int64)
        depth = np.zeros((B, L), dtype=np.int64)
        mask = None
        if self.share_prefixes:
            mask = np.zeros((B, L, L), dtype=bool)
            mask[:, np.arange(L), np.arange(L)] = True  # padding attends to itself only
        pairs_node, pairs_target, pairs_hyp = [], [], []
        eos = self.vocab.eos
        for b, r in enumerate(batch):
            n = len(r.tokens)
            tokens[b, :n] = r.tokens
            depth[b, :n] = r.depth
            if mask is not None:
                par = r.parent
                for j in range(1, n):  # nodes are depth first: a parent precedes its children
                    mask[b, j, :j] = mask[b, par[j], :j]
            for h, path in zip(r.hyps, r.paths):
                nodes = np.asarray(path, dtype=np.int64) + b * L
                targets = np.asarray(r.tokens, dtype=np.int64)[path[1:]].tolist() + [eos]
                pairs_node.append(nodes)
                pairs_target.append(np.asarray(targets, dtype=np.int64))
                pairs_hyp.append(np.full(len(path), h, dtype=np.int64))
        stats.batches += 1
        stats.positions += sum(len(r.tokens) for r in batch)
        stats.padded_positions += B * L
        stats.max_batch_positions = max(stats.max_batch_positions, B * L)

        blocks = None
        if mask is not None and self.attention_block:
            blocks = _TreeBlocks.build(mask, [r.parent for r in batch], self.attention_block)
        stats.attention_scores += blocks.scores if blocks is not None else B * L * L
        self._score_batch(B, L, tokens, depth, mask, pairs_node, pairs_target, pairs_hyp, total, per_token,
                          blocks)

    def _score_batch(self, B, L, tokens, depth, mask, pairs_node, pairs_target, pairs_hyp, total,
                     per_token, blocks=None):
        dev = self.device
        weights = self._weights()
        if mask is not None:  # additive mask made once, not converted again in every layer
            dt = torch.float32 if weights.layers is None else weights.dtype  # the attention's dtype
            if blocks is not None:
                mask = blocks.to(dt, dev)
            else:
                add = torch.zeros(mask.shape, dtype=dt, device=dev)
                mask = add.masked_fill_(~torch.from_numpy(mask).to(dev), float("-inf")).unsqueeze(1)
        hidden = self._hidden(torch.from_numpy(tokens).to(dev), torch.from_numpy(depth).to(dev), mask,
                              weights)
        hidden = hidden.reshape(B * L, -1).float()
        node = np.concatenate(pairs_node)
        target = np.concatenate(pairs_target)
        hyp = np.concatenate(pairs_hyp)
        # Target logits as float32 dot products (one row of the output matrix per scored token); only the
        # normaliser needs the full [nodes, vocab] product, which runs in chunks (bounded memory).
        node_t, target_t = torch.from_numpy(node).to(dev), torch.from_numpy(target).to(dev)
        out = self.model.out
        tlogit = torch.empty(len(node), dtype=torch.float32, device=dev)
        for s in range(0, len(node), self.token_budget):  # gathered rows bounded by the budget
            n_s, t_s = node_t[s:s + self.token_budget], target_t[s:s + self.token_budget]
            tlogit[s:s + len(n_s)] = target_logits(out, hidden[n_s], t_s)
        if self.self_normalized:  # the model was trained so that log Z is near 0: the logit is the score
            logp = tlogit.double().cpu().numpy()
        else:
            uniq, inverse = np.unique(node, return_inverse=True)
            inverse_t = torch.from_numpy(inverse).to(dev)
            best = torch.full((len(uniq),), -torch.inf, device=dev).scatter_reduce_(0, inverse_t, tlogit, "amax")
            lse = self._log_normalisers(hidden[torch.from_numpy(uniq).to(dev)], weights, shift=best)
            logp = (tlogit - lse[inverse_t]).double().cpu().numpy()
        np.subtract.at(total, hyp, logp)
        if per_token is not None:
            pos = np.concatenate([np.arange(len(n)) for n in pairs_node])
            by_hyp = np.argsort(hyp, kind="stable")
            for chunk in np.split(by_hyp, np.flatnonzero(np.diff(hyp[by_hyp])) + 1):
                per_token[hyp[chunk[0]]][pos[chunk]] = -logp[chunk]

    def _log_normalisers(self, h, weights, shift):
        """log sum_v exp(logit_v) for each row of ``h`` (float32), in chunks of ``logit_chunk`` rows whose
        logits go to a buffer reused from chunk to chunk.

        bf16: the product accumulates in float32 but its result is rounded to bfloat16, an error relative
        to the logit's size. So the matrix carries two more columns, the bias and a per-row ``shift`` (each
        as a bfloat16 pair, high and low part): it returns ``logit - shift``, and with the shift near the
        largest logit (the row's largest target logit), the logits that dominate the sum are small and keep
        nearly float32 accuracy."""
        if weights.packed is not None:
            return self._log_normalisers_packed(h, weights, shift)
        n, c = len(h), self.logit_chunk
        out = torch.empty(n, dtype=torch.float32, device=h.device)
        c = min(c, -(-n // 32) * 32)
        W = weights.out_weight
        logits = torch.empty(c, W.shape[0], dtype=W.dtype, device=h.device)
        x = torch.zeros(c, W.shape[1], dtype=W.dtype, device=h.device)
        D = h.shape[1]
        low = W.dtype != torch.float32
        # One thread: the float32 work in cache-sized pieces (~13% faster in bf16). Several: whole chunks, as
        # every small op is a parallel region whose barrier stalls whenever a thread is descheduled.
        piece_rows = 32 if torch.get_num_threads() == 1 else c
        for s in range(0, n, c):
            k = min(c, n - s)
            x[:k, :D] = h[s:s + k]
            # bf16: the last chunk keeps the full row count (odd counts make oneDNN's bf16 matmul slow); float32
            # products of any row count run at full speed, so the last chunk has its own rows only
            rows = c if low else k
            x[k:rows] = 0
            if low:
                sh = shift[s:s + k]
                hi = sh.to(W.dtype)
                x[:k, D:D + 2] = 1
                x[:k, D + 2] = -hi
                x[:k, D + 3] = (hi.float() - sh).to(W.dtype)
            torch.mm(x[:rows], W.t(), out=logits[:rows])
            for r in range(0, k, piece_rows):
                piece = logits[r:min(k, r + piece_rows)]
                piece = piece.float() if low else piece.add_(weights.out_bias)
                top = piece.amax(dim=-1, keepdim=True)
                res = piece.sub_(top).exp_().sum(dim=-1).log_().add_(top.squeeze(-1))
                out[s + r:s + r + len(res)] = (res + shift[s + r:s + r + len(res)]) if low else res
        return out

    def _log_normalisers_packed(self, h, weights, shift):
        """:meth:`_log_normalisers` for a packed output matrix, blocked so that nothing vocabulary-sized is
        ever held: the matrix is decoded ``vocab_rows`` rows at a time into the one buffer packed matrices
        share, each block multiplies ``node_rows`` nodes at a time into one reused logits buffer (small
        enough to stay in cache while its exponentials are summed), and the log-sum-exp runs over the blocks
        (a running maximum and sum per node). Each row of the matrix is decoded once per batch. bf16: the
        same bias and shift columns as the float path, appended to each decoded block."""
        W = weights.packed
        n, D = h.shape
        dt = weights.dtype
        low = dt != torch.float32
        dev = h.device
        # bf16: row counts in multiples of 32 (odd counts make oneDNN's bf16 matmul slow)
        rows = -(-n // 32) * 32 if low else n
        size = 2 if low else 4
        if dev.type == "cpu":  # cache-sized blocks
            node_rows, vocab_rows = 512, 1024
        else:  # few large products: each launch costs more than its arithmetic
            node_rows = rows
            vocab_rows = max(32, int(self.logits_bytes // (size * max(rows, 1))) // 32 * 32)
        vocab_rows = min(vocab_rows, max(32, int(self.logits_bytes // (size * min(node_rows, rows))) // 32 * 32))
        x = torch.zeros(rows, D + (4 if low else 0), dtype=dt, device=dev)
        x[:n, :D] = h
        if low:
            hi = shift.to(dt)
            x[:n, D:D + 2] = 1
            x[:n, D + 2] = -hi
            x[:n, D + 3] = (hi.float() - shift).to(dt)
            b_hi = weights.out_bias.to(dt)
            b_lo = (weights.out_bias - b_hi.float()).to(dt)
            ext = torch.empty(min(vocab_rows, W.rows), D + 4, dtype=dt, device=dev)
        logits = torch.empty(min(node_rows, rows) * min(vocab_rows, W.rows), dtype=dt, device=dev)
        m = torch.full((rows,), -torch.inf, device=dev)
        total = torch.zeros(rows, device=dev)
        for v0, v1, w in W.chunks(dt, max_rows=vocab_rows, reuse=True):
            k = v1 - v0
            if low:
                e = ext[:k]
                e[:, :D] = w
                e[:, D], e[:, D + 1] = b_hi[v0:v1], b_lo[v0:v1]
                e[:, D + 2:] = 1
                w = e
            for r0 in range(0, rows, node_rows):
                r1 = min(rows, r0 + node_rows)
                lg = logits[:(r1 - r0) * k].view(r1 - r0, k)
                if low:
                    torch.mm(x[r0:r1], w.t(), out=lg)
                    lg = lg.float()
                else:
                    torch.addmm(weights.out_bias[v0:v1], x[r0:r1], w.t(), out=lg)
                top = torch.maximum(m[r0:r1], lg.amax(dim=1))
                total[r0:r1].mul_(torch.exp(m[r0:r1] - top)).add_(lg.sub_(top[:, None]).exp_().sum(dim=1))
                m[r0:r1] = top
        out = (m + total.log())[:n]
        return out + shift if low else out

    def word_cost_floor(self) -> float:
        """With the normaliser 0; without it (a word's cost is minus its logit, which can be negative) minus
        the largest logit any hidden state can give: the last LayerNorm bounds the hidden state's norm by
        ``max|gamma| * sqrt(d) + |beta|``, so a logit is at most that times the largest row norm of the output
        matrix plus the largest bias. No such LayerNorm: no bound (-inf)."""
        if not self.self_normalized:
            return 0.0
        m = self.model
        norm = m.final_norm if m.final_norm is not None else (m.layers[-1].norm2 if m.cfg.norm == "post" else None)
        if norm is None or norm.weight is None:
            return -math.inf
        h = float(norm.weight.detach().abs().max()) * math.sqrt(m.cfg.d_model)
        h += float(norm.bias.detach().norm()) if norm.bias is not None else 0.0
        out = m.out
        if isinstance(out, PackedLinear):
            w = max(float(rows.norm(dim=1).max()) for _, _, rows in out.matrix.chunks(reuse=True))
        else:
            w = float(out.weight.detach().norm(dim=1).max())
        b = float(out.bias.detach().max()) if out.bias is not None else 0.0
        return -(h * w + b)

    def _weights(self) -> "_Weights":
        """The weights the forward uses: the model's own in fp32; in bf16 mode cached bfloat16 copies of every
        Linear's weight and bias, rebuilt when a parameter changes (its storage or version)."""
        m = self.model
        packed = m.out.matrix if isinstance(m.out, PackedLinear) else None
        if not self.bf16 or packed is not None:
            # A packed model's Linears decode their own weights under autocast: nothing to cache.
            bias = m.out.bias if m.out.bias is not None else torch.zeros(m.cfg.vocab_size, device=self.device)
            layers = None if not self.bf16 else [{} for _ in m.layers]
            return _Weights(torch.bfloat16 if self.bf16 else torch.float32, None if packed is not None
                            else m.out.weight, bias.detach().float(), layers, packed)
        linears = {name: mod for name, mod in m.named_modules() if isinstance(mod, torch.nn.Linear)}
        params = [p for mod in linears.values() for p in mod.parameters(recurse=False)]
        key = tuple((p.data_ptr(), p._version) for p in params)
        if self._cache is None or self._cache[0] != key:
            dt = torch.bfloat16
            layers = []
            for i in range(len(m.layers)):
                prefix = f"layers.{i}."
                layers.append({f"{name[len(prefix):]}.{pname}": p.detach().to(dt)
                               for name, mod in linears.items() if name.startswith(prefix)
                               for pname, p in mod.named_parameters(recurse=False)})
            bias = m.out.bias if m.out.bias is not None else torch.zeros(m.cfg.vocab_size, device=self.device)
            W = m.out.weight.detach()
            V, D = W.shape
            out = torch.zeros(V, -(-(D + 4) // 4) * 4, dtype=dt, device=W.device)
            out[:, :D] = W
            b_hi = bias.detach().to(dt)
            out[:, D], out[:, D + 1] = b_hi, (bias.detach() - b_hi.float()).to(dt)
            out[:, D + 2:D + 4] = 1  # times -shift (high and low part)
            self._cache = (key, _Weights(dt, out, bias.detach(), layers))
        return self._cache[1]

    def _hidden(self, tokens, depth, mask, weights):
        """The model's final hidden states with per-node positions and an optional tree mask. In bf16 mode
        each layer runs with its cached bfloat16 Linear weights under autocast (LayerNorms and the residual
        stream stay float32)."""
        m = self.model
        x = m.embed(tokens)
        if m.cfg.scale_embedding:
            x = x * math.sqrt(m.cfg.d_model)
        x = x + m.positions(int(depth.max()) + 1, x.device)[depth].to(x.dtype)
        for i, layer in enumerate(m.layers):
            if weights.layers is None:
                x, _ = layer(x, None, mask)
            else:
                with torch.autocast(device_type=self.device.type, dtype=weights.dtype):
                    x, _ = torch.func.functional_call(layer, weights.layers[i], (x, None, mask))
        if m.final_norm is not None:
            x = m.final_norm(x)
        return x


def make_scorer(model, vocab: Vocabulary, **options) -> WordScorer:
    """The scorer for ``model``: :class:`NNScorer` for a Transformer, ``LSTMScorer`` for an LSTM (which has
    no packed rows, so ``max_row`` does not apply to it)."""
    from asr_lm_quant.lm.lstm import LSTMLM
    if isinstance(model, LSTMLM):
        from asr_lm_quant.rescore.rnnscore import LSTMScorer
        options.pop("max_row", None)
        options.pop("attention_block", None)
        if options.pop("self_normalized", False):
            raise ValueError("scoring without the normaliser is implemented for Transformer LMs only")
        return LSTMScorer(model, vocab, **options)
    return NNScorer(model, vocab, **options)


class _TreeBlocks:
    """Tree-masked attention computed in blocks of query nodes, over the keys a block can see only.

    A row's nodes are laid out depth first, so every ancestor of a node ``j`` that lies before a block's
    first node ``a`` (``a <= j``) is also an ancestor of ``a``. A block of queries ``a .. a+Q-1`` therefore
    needs as keys only the ancestors of ``a`` and the block's own nodes: ``depth(a) + Q`` keys instead of the
    whole row, the tree mask (gathered from the dense one) choosing among them. Each node is a query of one
    block; the softmax runs over exactly the keys the dense mask allows, so results equal the dense path's
    up to summation order."""

    def __init__(self, q_index, q_valid, k_index, allowed, shape):
        self.q_index, self.q_valid, self.k_index, self.allowed = q_index, q_valid, k_index, allowed
        self.B, self.L, self.nb, self.Q, self.K = shape
        self.scores = self.B * self.nb * self.Q * self.K
        self.mask = None

    def to(self, dtype, device) -> "_TreeBlocks":
        """On ``device``, with the additive mask in the attention's dtype (made once for all layers)."""
        self.q_index, self.q_valid, self.k_index = (torch.from_numpy(t).to(device) for t in
                                                    (self.q_index, self.q_valid, self.k_index))
        add = torch.zeros(self.allowed.shape, dtype=dtype, device=device)
        self.mask = add.masked_fill_(~torch.from_numpy(self.allowed).to(device), float("-inf")).unsqueeze(1)
        return self

    @classmethod
    def build(cls, mask: np.ndarray, parents: list, block: int):
        """From the dense boolean tree mask [B, L, L] and each row's parent list; None when blocks would not
        save at least a third of the score matrix (short rows, or deep trees)."""
        B, L, _ = mask.shape
        Q = min(block, L)
        nb = -(-L // Q)
        starts = np.arange(nb) * Q
        ancestors = []
        for par in parents:
            for a in starts:
                chain, u = [], (par[a] if a < len(par) else -1)
                while u >= 0:  # beyond the row's end a position is padding: no ancestors
                    chain.append(u)
                    u = par[u]
                ancestors.append(chain[::-1])
        A = max(len(c) for c in ancestors)
        K = A + Q
        if nb * Q * K > (2 / 3) * L * L:
            return None
        k_local = np.empty((B * nb, K), dtype=np.int64)
        k_valid = np.ones((B * nb, K), dtype=bool)
        for i, chain in enumerate(ancestors):
            a = starts[i % nb]
            k_local[i, :len(chain)] = chain
            k_local[i, len(chain):A] = a  # unused slots (masked)
            k_valid[i, len(chain):A] = False
            k_local[i, A:] = np.minimum(a + np.arange(Q), L - 1)
            k_valid[i, A:] = a + np.arange(Q) < L
        q_local = (starts[:, None] + np.arange(Q)).reshape(1, nb, Q).repeat(B, 0).reshape(B * nb, Q)
        q_valid = q_local < L
        q_local = np.minimum(q_local, L - 1)
        rows = np.repeat(np.arange(B), nb)
        allowed = mask[rows[:, None, None], q_local[:, :, None], k_local[:, None, :]] & k_valid[:, None, :]
        allowed[~q_valid, A] = True  # queries past the row's end (discarded) see the block's first node
        base = (rows * L)[:, None]
        return cls((q_local + base).reshape(-1), q_valid.reshape(-1), (k_local + base).reshape(-1), allowed,
                   (B, L, nb, Q, K))

    def attend(self, q, k, v):
        B, H, T, dh = q.shape
        n = B * self.nb

        def gather(t, index, size):  # [B, H, T, dh] -> [blocks, H, size, dh]
            return t.transpose(1, 2).reshape(B * T, H, dh)[index].view(n, size, H, dh).transpose(1, 2)

        y = torch.nn.functional.scaled_dot_product_attention(
            gather(q, self.q_index, self.Q), gather(k, self.k_index, self.K), gather(v, self.k_index, self.K),
            attn_mask=self.mask)
        y = y.transpose(1, 2).reshape(n * self.Q, H, dh)
        out = torch.empty(B * T, H, dh, dtype=y.dtype, device=y.device)
        out[self.q_index[self.q_valid]] = y[self.q_valid]
        return out.view(B, T, H, dh).transpose(1, 2)


@dataclass
class _Weights:
    dtype: torch.dtype
    out_weight: torch.Tensor       # [vocab, d_model] in dtype; bf16: [vocab, K] with bias and shift columns
    out_bias: torch.Tensor         # [vocab] float32
    layers: list | None            # per layer {parameter name: bfloat16 tensor}; None = the model's own
    packed: object = None          # the output layer's PackedMatrix (then out_weight is None)


def naive_costs(model: TransformerLM, vocab: Vocabulary, hyps) -> np.ndarray:
    """One padded fp32 batch per call, full log-softmax, no sharing: how Kaldi's
    ``compute_sentence_scores.py`` scores an utterance's N-best (the benchmark's baseline)."""
    seqs = [[vocab.bos] + vocab.encode(h.split() if isinstance(h, str) else h) for h in hyps]
    if not seqs:
        return np.zeros(0)
    L = max(len(s) for s in seqs)
    inp = torch.zeros(len(seqs), L, dtype=torch.long)
    tgt = torch.zeros(len(seqs), L, dtype=torch.long)
    valid = torch.zeros(len(seqs), L, dtype=torch.bool)
    for b, s in enumerate(seqs):
        inp[b, :len(s)] = torch.tensor(s)
        tgt[b, :len(s)] = torch.tensor(s[1:] + [vocab.eos])
        valid[b, :len(s)] = True
    with torch.inference_mode():
        logp = torch.log_softmax(model(inp).float(), dim=-1)
        tok = logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    return (-(tok * valid).sum(dim=1)).double().numpy()
