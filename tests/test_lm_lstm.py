"""Kaldi pytorchnn LSTM import, LSTM scoring, perplexity, rescoring and quantization."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import load_lm
from asr_lm_quant.lm.kaldi_import import import_kaldi
from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
from asr_lm_quant.rescore.nnscore import make_scorer
from asr_lm_quant.rescore.rnnscore import LSTMScorer

WORDS = ["<eps>", "<unk>", "a", "b", "c", "d", "e", "#0", "<s>", "</s>"]


class KaldiRNNModel(nn.Module):
    """Kaldi's pytorchnn RNNModel for rnn_type LSTM: embedding 'encoder', sequence-first nn.LSTM 'rnn',
    linear 'decoder' (tied to the embedding on request), dropout around the LSTM."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        self.nhid, self.nlayers = nhid, nlayers

    def forward(self, src, hidden):  # src [T, B]
        out, hidden = self.rnn(self.drop(self.encoder(src)), hidden)
        return self.decoder(self.drop(out)), hidden

    def init_hidden(self, bsz):
        z = torch.zeros(self.nlayers, bsz, self.nhid)
        return z, z.clone()


def write_kaldi_words(path, words):
    path.write_text("".join(f"{w} {i + 3}\n" for i, w in enumerate(words)))


def kaldi_sentence_logprob(kaldi, bos, ids):
    """log p(w1 .. wn <s> | <s>) as Kaldi's compute_sentence_scores.py computes it: input <s> w1 .. wn,
    targets w1 .. wn <s>, from a zero state."""
    inp = torch.tensor([bos] + ids).unsqueeze(1)
    tgt = torch.tensor(ids + [bos])
    with torch.no_grad():
        logits, _ = kaldi(inp, kaldi.init_hidden(1))
        return float(torch.log_softmax(logits[:, 0].double(), -1).gather(1, tgt[:, None]).sum())


def make_kaldi_lstm(tmp_path, *, ninp=12, nhid=12, nlayers=2, tied=False, seed=0):
    torch.manual_seed(seed)
    kaldi = KaldiRNNModel(len(WORDS), ninp, nhid, nlayers, dropout=0.2 if nlayers > 1 else 0.0,
                         tie_weights=tied).eval()
    with torch.no_grad():  # larger than the default init, so that mixing up gates or biases shows
        for p in kaldi.parameters():
            p.uniform_(-0.6, 0.6)
    torch.save(kaldi.state_dict(), tmp_path / "model.pt")
    write_kaldi_words(tmp_path / "words.txt", WORDS)
    return kaldi


@pytest.mark.parametrize("ninp,nhid,nlayers,tied", [(12, 12, 2, True), (10, 14, 3, False), (8, 8, 1, False)])
def test_import_matches_kaldi_rnnmodel(tmp_path, ninp, nhid, nlayers, tied):
    kaldi = make_kaldi_lstm(tmp_path, ninp=ninp, nhid=nhid, nlayers=nlayers, tied=tied)
    model, vocab = import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", model_type="LSTM")
    assert isinstance(model, LSTMLM) and vocab.words == WORDS and vocab.bos == 8
    assert model.cfg == LSTMConfig(vocab_size=10, d_embed=ninp, d_hidden=nhid, n_layers=nlayers,
                                   tie_embeddings=tied)
    assert (model.out.weight is model.embed.weight) == tied
    gen = torch.Generator().manual_seed(1)
    sentences = [torch.randint(1, 7, (n,), generator=gen).tolist() for n in (0, 1, 4, 9, 13)]
    want = np.array([kaldi_sentence_logprob(kaldi, vocab.bos, s) for s in sentences])
    # the model's own forward, one sentence at a time and as a padded batch
    for s, w in zip(sentences, want):
        inp = torch.tensor([[vocab.bos] + s])
        with torch.no_grad():
            lp = torch.log_softmax(model(inp)[0].double(), -1).gather(1, torch.tensor(s + [vocab.bos])[:, None])
        assert abs(float(lp.sum()) - w) < 1e-5
    # the scorer: shared prefixes, and without sharing, and in tiny groups
    hyps = [[vocab.words[i] for i in s] for s in sentences]
    for opts in ({}, {"share_prefixes": False}, {"token_budget": 2, "logits_bytes": 80}):
        scorer = LSTMScorer(model, vocab, **opts)
        np.testing.assert_allclose(scorer.costs(hyps), -want, atol=1e-5, rtol=0)
        per = scorer.word_costs(hyps)
        np.testing.assert_allclose([p.sum() for p in per], -want, atol=1e-5, rtol=0)
        assert [len(p) for p in per] == [len(h) + 1 for h in hyps]


def test_scorer_shares_prefixes_and_scores_oov_as_unk(tmp_path):
    make_kaldi_lstm(tmp_path)
    model, vocab = import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", model_type="LSTM")
    scorer = make_scorer(model, vocab, max_row=64)  # max_row is a Transformer option: accepted, unused
    assert isinstance(scorer, LSTMScorer)
    hyps = ["a b c d", "a b c e", "a b c", "a b zebra", "a b <unk>"]
    costs = scorer.costs(hyps)
    assert scorer.stats.oov == 1 and scorer.stats.words == 17
    # trie: <s> a b {c {d, e}, <unk>}: 7 nodes instead of 5 + 5 + 4 + 4 + 4 positions
    assert scorer.stats.positions == 7 and scorer.stats.batches == 5
    assert costs[3] == pytest.approx(costs[4], abs=1e-9)
    per, per_abc = scorer.word_costs(["a b c d", "a b c"])
    assert len(per) == 5 and len(per_abc) == 4
    np.testing.assert_allclose(per[:3], per_abc[:3], atol=1e-9)  # same history, same word costs
    assert per.sum() == pytest.approx(costs[0], abs=1e-9) and per_abc.sum() == pytest.approx(costs[2], abs=1e-9)
    assert LSTMScorer(model, vocab, share_prefixes=False).costs(hyps) == pytest.approx(costs, abs=1e-5)


def test_cli_import_ppl_and_rescore(tmp_path, capsys):
    kaldi = make_kaldi_lstm(tmp_path, ninp=10, nhid=14, nlayers=2)
    out = tmp_path / "lm"
    args = ["import-kaldi", "--model", "LSTM", "--model-pt", str(tmp_path / "model.pt"),
            "--words", str(tmp_path / "words.txt"), "--out", str(out)]
    assert main(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["arch"] == "lstm" and cfg["imported_from"]["model"] == "LSTM"
    model, vocab = load_lm(out)
    assert isinstance(model, LSTMLM) and vocab.words == WORDS
    capsys.readouterr()
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err
    from asr_lm_quant import api
    assert api.load_lm(out).score(["a b c"])[0] == pytest.approx(
        -kaldi_sentence_logprob(kaldi, 8, vocab.encode("a b c".split())), abs=1e-5)

    # ppl counts every word and every end of sentence, OOVs as <unk>
    sents = [["a", "b", "c"], ["d", "zebra"], ["e"]]
    (tmp_path / "text").write_text("".join(" ".join(s) + "\n" for s in sents))
    assert main(["ppl", "--model", str(out), "--text", str(tmp_path / "text")]) == 0
    r = json.loads(capsys.readouterr().out)
    lp = sum(kaldi_sentence_logprob(kaldi, 8, vocab.encode(s)) for s in sents)
    assert r["ppl"] == pytest.approx(np.exp(-lp / 9), rel=1e-5) and r["oov"] == 1

    # rescore-nbest without an old LM: lm_cost + w * nn
    rows = [("u1", 1, "a b c", 10.0, 5.0), ("u1", 2, "a b d", 10.5, 4.0), ("u2", 1, "e", 3.0, 1.0)]
    nbest = tmp_path / "hyps.tsv"
    nbest.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\n" + "".join(f"{u}\t{k}\t{w}\t{a}\t{l}\n"
                                                                    for u, k, w, a, l in rows))
    res = tmp_path / "out.tsv"
    assert main(["rescore-nbest", "--lm-dir", str(out), "--nbest", str(nbest), "--weight", "0.5",
                 "--out-nbest", str(res)]) == 0
    got = [line.split("\t") for line in res.read_text().splitlines()[1:]]
    for (u, k, w, a, l), g in zip(rows, got):
        nn_cost = -kaldi_sentence_logprob(kaldi, 8, vocab.encode(w.split()))
        assert g[2] == w and float(g[4]) == pytest.approx(l + 0.5 * nn_cost, abs=1e-4)


def test_quantize_ptq_lstm_loads_and_rescores(tmp_path, capsys):
    make_kaldi_lstm(tmp_path, ninp=16, nhid=16, nlayers=2, tied=True)
    lm = tmp_path / "lm"
    assert main(["import-kaldi", "--model", "LSTM", "--model-pt", str(tmp_path / "model.pt"),
                 "--words", str(tmp_path / "words.txt"), "--out", str(lm)]) == 0
    (tmp_path / "valid").write_text("a b c\nd e a\n")
    q = tmp_path / "q4"
    assert main(["quantize", str(lm), str(q), "--method", "ptq", "--bits", "4",
                 "--valid", str(tmp_path / "valid")]) == 0
    plan = json.loads((q / "plan.json").read_text())
    groups = plan["groups"] if "groups" in plan else plan
    # the gate matrices are weight groups too, and the tied embedding/output matrix is one group
    assert {"embed.weight", "layers.0.ih.weight", "layers.0.hh.weight", "layers.1.ih.weight",
            "layers.1.hh.weight"} <= set(groups) and "out.weight" not in groups
    from asr_lm_quant.quant.packed import load_lm_for_inference, load_packed
    from asr_lm_quant.quant.packed_modules import PackedLinear
    from asr_lm_quant.quant.quantizers import kmax
    fmodel, vocab, qplan = load_packed(q)
    assert isinstance(fmodel, LSTMLM)
    w = fmodel.layers[1].hh.weight
    scale = qplan.scale_tensor("layers.1.hh.weight")
    codes = w / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= kmax(4)
    pmodel, _ = load_lm_for_inference(q)
    assert isinstance(pmodel.layers[0].hh, PackedLinear) and isinstance(pmodel.out, PackedLinear)
    hyps = ["a b c", "a b d", "e", "c c c c c"]
    packed_costs = make_scorer(pmodel, vocab).costs(hyps)
    float_costs = make_scorer(fmodel, vocab).costs(hyps)
    np.testing.assert_allclose(packed_costs, float_costs, atol=1e-4, rtol=0)
    orig, _ = load_lm(lm)
    assert not np.allclose(make_scorer(orig, vocab).costs(hyps), float_costs, atol=1e-3)  # it did quantize
    nbest = tmp_path / "hyps.tsv"
    nbest.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu1\t1\ta b c\t1\t2\nu1\t2\ta b d\t1\t3\n")
    res = tmp_path / "out.tsv"
    capsys.readouterr()
    assert main(["rescore-nbest", "--lm-dir", str(q), "--nbest", str(nbest), "--weight", "1",
                 "--out-nbest", str(res)]) == 0
    got = [float(line.split("\t")[4]) for line in res.read_text().splitlines()[1:]]
    np.testing.assert_allclose(got, [2 + packed_costs[0], 3 + packed_costs[1]], atol=1e-4)


def test_import_lstm_errors(tmp_path):
    kaldi = make_kaldi_lstm(tmp_path)
    with pytest.raises(InputError, match="is this the Transformer model"):
        sd = {"encoder.weight": torch.zeros(10, 4), "decoder.weight": torch.zeros(10, 4)}
        torch.save(sd, tmp_path / "t.pt")
        import_kaldi(tmp_path / "t.pt", tmp_path / "words.txt", model_type="LSTM")
    with pytest.raises(InputError, match="is this the LSTM model"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", model_type="Transformer")
    gru = {"encoder.weight": torch.zeros(10, 4), "rnn.weight_ih_l0": torch.zeros(12, 4),
           "rnn.weight_hh_l0": torch.zeros(12, 4), "decoder.weight": torch.zeros(10, 4)}
    torch.save(gru, tmp_path / "gru.pt")
    with pytest.raises(InputError, match="a GRU; only LSTM"):
        import_kaldi(tmp_path / "gru.pt", tmp_path / "words.txt", model_type="LSTM")
    sd = kaldi.state_dict()
    sd["rnn.extra"] = torch.zeros(1)
    torch.save(sd, tmp_path / "extra.pt")
    with pytest.raises(InputError, match="unexpected tensors.*rnn.extra"):
        import_kaldi(tmp_path / "extra.pt", tmp_path / "words.txt", model_type="LSTM")
    torch.save(kaldi, tmp_path / "whole.pt")  # a pickled module: refused unread
    with pytest.raises(InputError, match="weights-only"):
        import_kaldi(tmp_path / "whole.pt", tmp_path / "words.txt", model_type="LSTM")
    write_kaldi_words(tmp_path / "short.txt", WORDS[:-1])
    with pytest.raises(InputError, match="9 words, but .* has 10 embedding rows"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "short.txt", model_type="LSTM")
    with pytest.raises(InputError, match="model type 'GRU'"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", model_type="GRU")


def test_quantize_ste_trains_through_the_lstm(tmp_path):
    torch.manual_seed(0)
    words = ["<s>", "<unk>"] + list("abcdefgh")
    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.text.vocab import Vocabulary
    model = LSTMLM(LSTMConfig(vocab_size=len(words), d_embed=16, d_hidden=16, n_layers=2, tie_embeddings=True))
    save_lm(tmp_path / "lm", model, Vocabulary(words))
    rng = np.random.default_rng(0)
    (tmp_path / "train").write_text("".join(" ".join(rng.choice(list("abcd"), size=rng.integers(2, 7))) + "\n"
                                            for _ in range(100)))
    assert main(["quantize", str(tmp_path / "lm"), str(tmp_path / "q"), "--method", "ste", "--bits", "2",
                 "--train", str(tmp_path / "train"), "--valid", str(tmp_path / "train"), "--steps", "30",
                 "--lr", "0.02"]) == 0
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert set(res["plan_bits"].values()) == {2} and "layers.1.hh.weight" in res["plan_bits"]
    # training on a text of four letters moved probability onto them: below the uniform ppl of 10 words
    assert res["valid_ppl"] < 9.0


def test_bf16_scoring_is_close(tmp_path):
    make_kaldi_lstm(tmp_path, ninp=16, nhid=16)
    model, vocab = import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", model_type="LSTM")
    hyps = ["a b c d e", "e d", "c c c a b"]
    exact = LSTMScorer(model, vocab).costs(hyps)
    np.testing.assert_allclose(LSTMScorer(model, vocab, bf16=True).costs(hyps), exact, rtol=2e-2)


def test_unknown_arch_in_config(tmp_path):
    make_kaldi_lstm(tmp_path)
    assert main(["import-kaldi", "--model", "LSTM", "--model-pt", str(tmp_path / "model.pt"),
                 "--words", str(tmp_path / "words.txt"), "--out", str(tmp_path / "lm")]) == 0
    cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
    cfg["model"]["arch"] = "gru"
    (tmp_path / "lm" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"config.json: not a valid LM config: unknown model arch 'gru'"):
        load_lm(tmp_path / "lm")
