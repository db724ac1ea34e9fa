"""LM training data: text files -> sentence sequences -> padded, length-bucketed batches.

Each sentence becomes ``<s> w1 .. wn <s>`` (``<s>`` is also the end of sentence); the model reads
``<s> w1 .. wn`` and predicts ``w1 .. wn <s>``. A sentence longer than ``max_len`` tokens is cut into
windows that overlap by one token. Batches hold up to ``tokens_per_batch`` tokens (rows x longest row),
padding is right-aligned and marked with target ``PAD_TARGET`` so the loss ignores it.

Batch order is a pure function of (seed, epoch): resuming at (epoch, index) replays exactly the
batches an uninterrupted run would have seen. Under data-parallel training every rank builds the same
global batches and takes rows ``rank::world_size`` of each, so a global batch is the same whatever the
number of processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.text.vocab import Vocabulary
from asr_lm_quant.textio import read_lines, split_fields

log = logging.getLogger(__name__)

PAD_TARGET = -100  # ignore_index of cross_entropy


@dataclass
class EncodedText:
    """Sentences of a file as word ids (no boundaries), with counts for reports."""
    path: Path
    sentences: list[np.ndarray]
    words: int
    oov: int

    @property
    def tokens(self) -> int:
        """Predicted tokens: every word plus one end-of-sentence per sentence."""
        return self.words + len(self.sentences)


def encode_file(path, vocab: Vocabulary) -> EncodedText:
    """Read one sentence per line (empty lines skipped); OOV words become ``<unk>`` and are counted."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "text file does not exist")
    index, unk = vocab.index, vocab.unk
    sentences, words, oov = [], 0, 0
    for _, line in read_lines(path):
        toks = split_fields(line)
        if not toks:
            continue
        ids = [index.get(w, -1) for w in toks]
        missing = ids.count(-1)
        if missing:
            oov += missing
            ids = [unk if i < 0 else i for i in ids]
        sentences.append(np.asarray(ids, dtype=np.int32))
        words += len(ids)
    if not sentences:
        raise InputError(path, "no sentences (the file is empty)")
    return EncodedText(path, sentences, words, oov)


def sequences(text: EncodedText, bos: int, max_len: int) -> list[np.ndarray]:
    """Token sequences of at most ``max_len + 1`` ids (inputs are ``seq[:-1]``, targets ``seq[1:]``)."""
    if max_len < 1:
        raise ValueError("max_len must be positive")
    out = []
    for s in text.sentences:
        full = np.concatenate([[bos], s, [bos]]).astype(np.int64)
        if len(full) <= max_len + 1:
            out.append(full)
        else:
            for start in range(0, len(full) - 1, max_len):
                out.append(full[start:start + max_len + 1])
    return out


@dataclass
class Batch:
    inputs: torch.Tensor   # [B, T] int64
    targets: torch.Tensor  # [B, T] int64, PAD_TARGET at padding
    tokens: int            # real (non-padding) target tokens in this rank's rows
    global_tokens: int     # real target tokens in the whole global batch (all ranks)


class BatchPlan:
    """The batches of one data set: ``epoch_batches(epoch)`` is a deterministic list of row-index lists."""

    def __init__(self, seqs: list[np.ndarray], tokens_per_batch: int, *, seed: int = 0, shuffle: bool = True,
                 min_rows: int = 1, bucket_factor: int = 50):
        if not seqs:
            raise ValueError("no sequences to batch")
        self.seqs = seqs
        self.lengths = np.array([len(s) - 1 for s in seqs])
        self.tokens_per_batch = tokens_per_batch
        self.seed = seed
        self.shuffle = shuffle
        self.min_rows = min_rows
        self.bucket_factor = bucket_factor
        self._cache: dict[int, list[np.ndarray]] = {}

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if epoch in self._cache:
            return self._cache[epoch]
        n = len(self.seqs)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            # sort within large chunks so rows of a batch have similar lengths (little padding)
            chunk = max(1, self.bucket_factor * max(1, self.tokens_per_batch // max(1, int(self.lengths.mean()))))
            parts = [order[i:i + chunk] for i in range(0, n, chunk)]
            order = np.concatenate([p[np.argsort(-self.lengths[p], kind="stable")] for p in parts])
        else:
            rng = None
            order = np.argsort(-self.lengths, kind="stable")
        batches, cur, cur_max = [], [], 0
        for i in order:
            length = int(self.lengths[i])
            new_max = max(cur_max, length)
            if cur and len(cur) >= self.min_rows and new_max * (len(cur) + 1) > self.tokens_per_batch:
                batches.append(np.array(cur))
                cur, new_max = [], length
            cur.append(i)
            cur_max = new_max
        if cur:
            if len(cur) < self.min_rows and batches:
                batches[-1] = np.concatenate([batches[-1], cur])
            else:
                batches.append(np.array(cur))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = {epoch: batches}
        return batches

    def num_batches(self, epoch: int) -> int:
        """Batches in ``epoch`` (bucketing after a shuffle can give each epoch a slightly different count)."""
        return len(self.epoch_batches(epoch))

    def make_batch(self, rows: np.ndarray, rank: int = 0, world_size: int = 1) -> Batch:
        global_tokens = int(self.lengths[rows].sum())
        mine = rows[rank::world_size]
        T = int(self.lengths[mine].max())
        inputs = torch.zeros(len(mine), T, dtype=torch.long)
        targets = torch.full((len(mine), T), PAD_TARGET, dtype=torch.long)
        for r, i in enumerate(mine):
            s = torch.from_numpy(self.seqs[i])
            inputs[r, :len(s) - 1] = s[:-1]
            targets[r, :len(s) - 1] = s[1:]
        return Batch(inputs, targets, int(self.lengths[mine].sum()), global_tokens)

    def iterate(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1):
        """Yield ``(index, Batch)`` for the epoch's batches from ``start`` on (this rank's rows)."""
        for k, rows in enumerate(self.epoch_batches(epoch)):
            if k >= start:
                yield k, self.make_batch(rows, rank, world_size)

    def __len__(self):
        """Batches in the first epoch (see :meth:`num_batches`)."""
        return len(self.epoch_batches(0))


def batches(path, vocab: Vocabulary, tokens_per_batch: int, *, max_len: int = 256, seed: int = 0,
            shuffle: bool = True, epoch: int = 0, rank: int = 0, world_size: int = 1):
    """Convenience generator over one epoch of a text file: yields :class:`Batch` objects."""
    plan = BatchPlan(sequences(encode_file(path, vocab), vocab.bos, max_len), tokens_per_batch,
                     seed=seed, shuffle=shuffle, min_rows=world_size)
    for _, b in plan.iterate(epoch, 0, rank, world_size):
        yield b
