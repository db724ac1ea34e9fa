import numpy as np
import pytest
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.data import PAD_TARGET, BatchPlan, encode_file, sequences
from asr_lm_quant.text.vocab import Vocabulary

FIX = "tests/fixtures/lm"


@pytest.fixture
def vocab(repo_dir):
    return Vocabulary.load(repo_dir / FIX / "words.txt")


def test_encode_counts_oov(repo_dir, vocab):
    enc = encode_file(repo_dir / FIX / "valid.txt", vocab)
    lines = [line.split() for line in (repo_dir / FIX / "valid.txt").read_text().splitlines() if line.split()]
    assert len(enc.sentences) == len(lines)
    assert enc.words == sum(map(len, lines))
    assert enc.oov == sum(w not in vocab for s in lines for w in s) > 0
    assert enc.tokens == enc.words + len(lines)
    assert vocab.decode(enc.sentences[0].tolist()) == [w if w in vocab else "<unk>" for w in lines[0]]


def test_encode_errors(tmp_path, vocab):
    p = tmp_path / "t.txt"
    p.write_bytes(b"the cat\n\nsat \xc3\x28 on\n")
    with pytest.raises(InputError, match=r"t.txt, line 3, byte offset 13: not valid UTF-8"):
        encode_file(p, vocab)
    p.write_text("\n \n")
    with pytest.raises(InputError, match="no sentences"):
        encode_file(p, vocab)
    with pytest.raises(InputError, match="does not exist"):
        encode_file(tmp_path / "missing.txt", vocab)


def test_sequences_add_boundaries_and_window():
    v = Vocabulary(["<s>", "<unk>", "a", "b"])
    from asr_lm_quant.lm.data import EncodedText
    enc = EncodedText(None, [np.array([2, 3]), np.array([2, 3, 2, 3, 2, 3, 2])], 9, 0)
    seqs = sequences(enc, v.bos, max_len=4)
    assert seqs[0].tolist() == [0, 2, 3, 0]
    # 9 tokens "<s> a b a b a b a <s>" in windows of 5 overlapping by one: every target exactly once
    assert [s.tolist() for s in seqs[1:]] == [[0, 2, 3, 2, 3], [3, 2, 3, 2, 0]]
    assert sum(len(s) - 1 for s in seqs) == enc.tokens


def test_plan_covers_each_sequence_once_and_is_deterministic(repo_dir, vocab):
    seqs = sequences(encode_file(repo_dir / FIX / "train.txt", vocab), vocab.bos, 40)
    plan = BatchPlan(seqs, 600, seed=3)
    e0 = plan.epoch_batches(0)
    rows = np.concatenate(e0)
    assert sorted(rows.tolist()) == list(range(len(seqs)))
    assert all(plan.lengths[b].max() * len(b) <= 600 for b in e0 if len(b) > 1)
    again = BatchPlan(seqs, 600, seed=3)
    assert [b.tolist() for b in again.epoch_batches(0)] == [b.tolist() for b in e0]
    assert [b.tolist() for b in plan.epoch_batches(1)] != [b.tolist() for b in e0]
    assert [b.tolist() for b in BatchPlan(seqs, 600, seed=4).epoch_batches(0)] != [b.tolist() for b in e0]


def test_batches_pad_and_shard(repo_dir, vocab):
    seqs = sequences(encode_file(repo_dir / FIX / "train.txt", vocab), vocab.bos, 40)
    plan = BatchPlan(seqs, 800, seed=1, min_rows=2)
    rows = plan.epoch_batches(0)[0]
    whole = plan.make_batch(rows)
    assert whole.tokens == whole.global_tokens == int((whole.targets != PAD_TARGET).sum())
    for r, i in enumerate(rows):
        s = torch.from_numpy(seqs[i])
        n = len(s) - 1
        assert whole.inputs[r, :n].tolist() == s[:-1].tolist()
        assert whole.targets[r, :n].tolist() == s[1:].tolist()
        assert (whole.targets[r, n:] == PAD_TARGET).all()
    parts = [plan.make_batch(rows, rank, 2) for rank in range(2)]
    assert sum(p.tokens for p in parts) == whole.global_tokens
    assert all(p.global_tokens == whole.global_tokens for p in parts)
    assert all(len(b) >= 2 for b in plan.epoch_batches(0))
