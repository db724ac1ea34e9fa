"""Scoring with a Hugging Face causal LM checkpoint, and lattice rescoring with it and with an LSTM.

Every checkpoint is made here: a tiny random GPT-2 and a tokenizer trained with the ``tokenizers`` library on
a few sentences, saved with ``save_pretrained`` (nothing is downloaded)."""

import os

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="Hugging Face scoring needs the 'transformers' package "
                                           "(requirements.txt installs it)")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conftest import TINY as tiny  # noqa: E402

from asr_lm_quant.cli import main  # noqa: E402
from asr_lm_quant.errors import InputError  # noqa: E402
from asr_lm_quant.rescore.hfscore import HFScorer  # noqa: E402

SENTENCES = ["i think that is right", "the cat sat on the mat", "we like the green hills", "yes i do"]


def byte_level_checkpoint(path, seed=0):
    """GPT-2 style: byte-level BPE, one <|endoftext|> token for both BOS and EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=290, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model.eval(), fast


def word_level_checkpoint(path, seed=1):
    """Whole words, with distinct <s> (BOS) and </s> (EOS) tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + sorted({w for s in SENTENCES for w in s.split()})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=1, eos_token_id=2))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return model.eval(), fast


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpt2")
    model, tok = byte_level_checkpoint(path)
    return path, model, tok


def direct_logprobs(model, ids):
    """log p(ids[k] | ids[:k]) for k >= 1, from one forward pass of the model itself."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].numpy()


def test_costs_match_the_models_logits(gpt2):
    path, model, tok = gpt2
    hyps = ["i think that is right", "the cat sat on the zebra", "yes", "", "hills hills green"]
    scorer = HFScorer(path)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert scorer.start == scorer.end == eot
    costs, per = scorer.costs(hyps), scorer.word_costs(hyps)
    for h, c, p in zip(hyps, costs, per):
        words = h.split()
        # each word tokenised on its own, a space before all but the first: the same tokens as the whole text
        pieces = [tok(("" if k == 0 else " ") + w, add_special_tokens=False).input_ids for k, w in enumerate(words)]
        assert sum(pieces, []) == tok(h, add_special_tokens=False).input_ids
        lp = direct_logprobs(model, [eot] + sum(pieces, []) + [eot])
        assert c == pytest.approx(-lp.sum(), abs=1e-5)
        bounds = np.cumsum([0] + [len(x) for x in pieces])
        want = [-lp[a:b].sum() for a, b in zip(bounds, bounds[1:])] + [-lp[-1]]
        np.testing.assert_allclose(p, want, atol=1e-5, rtol=0)
    assert any(len(tok(" " + w, add_special_tokens=False).input_ids) > 1 for w in "zebra hills".split())
    assert scorer.stats.hypotheses == 5 and scorer.stats.words == 15
    # small batches (one hypothesis each) give the same costs as one padded batch
    small = HFScorer(path, token_budget=1)
    np.testing.assert_allclose(small.costs(hyps), costs, atol=1e-5, rtol=0)
    assert small.stats.batches == len(hyps)


def test_distinct_bos_and_eos(tmp_path):
    model, tok = word_level_checkpoint(tmp_path)
    scorer = HFScorer(tmp_path)
    assert (scorer.start, scorer.end) == (1, 2)
    hyps = ["the cat sat", "we like zebra hills"]  # zebra is <unk> to this tokenizer: one token all the same
    for h, c, p in zip(hyps, scorer.costs(hyps), scorer.word_costs(hyps)):
        ids = tok(h, add_special_tokens=False).input_ids
        lp = direct_logprobs(model, [1] + ids + [2])
        assert len(p) == len(ids) + 1 and c == pytest.approx(-lp.sum(), abs=1e-5)
        np.testing.assert_allclose(p, -lp, atol=1e-5, rtol=0)


def test_errors(tmp_path, gpt2):
    with pytest.raises(InputError, match="does not exist"):
        HFScorer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        HFScorer(tmp_path / "empty")
    path = gpt2[0]
    with pytest.raises(InputError, match="20 tokens exceed the model's context of 32|exceed the model's context"):
        HFScorer(path).costs(["i think " * 20])
    nb = tmp_path / "h.tsv"
    nb.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\nu\t1\tyes\t1\t1\n")
    rc = main(["rescore-nbest", "--hf-lm", str(path), "--nbest", str(nb), "--oov-penalty", "2",
               "--out-nbest", str(tmp_path / "o.tsv")])
    assert rc == 1 and not (tmp_path / "o.tsv").exists()
    with pytest.raises(SystemExit):  # --lm-dir and --hf-lm together
        main(["rescore-nbest", "--hf-lm", str(path), "--lm-dir", str(path), "--nbest", str(nb),
              "--out-nbest", str(tmp_path / "o.tsv")])


def test_rescore_nbest_with_hf(tmp_path, gpt2):
    path = gpt2[0]
    rows = [("u1", 1, "i think that is right", 10.0, 5.0), ("u1", 2, "i think that is rite", 9.5, 6.0),
            ("u2", 1, "yes i do", 3.0, 1.0)]
    nb = tmp_path / "h.tsv"
    nb.write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\n"
                  + "".join(f"{u}\t{k}\t{w}\t{a}\t{l}\n" for u, k, w, a, l in rows))
    out = tmp_path / "o.tsv"
    assert main(["rescore-nbest", "--hf-lm", str(path), "--nbest", str(nb), "--weight", "0.5",
                 "--out-nbest", str(out)]) == 0
    nn = HFScorer(path).costs([w for _, _, w, _, _ in rows])
    got = [float(line.split("\t")[4]) for line in out.read_text().splitlines()[1:]]
    np.testing.assert_allclose(got, [l + 0.5 * c for (_, _, _, _, l), c in zip(rows, nn)], atol=1e-4)


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("rescore"))


@pytest.mark.parametrize("kind", ["hf", "lstm"])
def test_rescore_lattice_with_hf_and_lstm(decode, gpt2, tmp_path, kind):
    from asr_lm_quant.kaldi.algorithms import best_path
    from asr_lm_quant.kaldi.archive import read_lattice_dict, read_lattices
    from asr_lm_quant.kaldi.nbest import nbest_paths
    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
    from asr_lm_quant.ngram import ArpaLM
    from asr_lm_quant.rescore.rnnscore import LSTMScorer

    t = decode
    if kind == "hf":
        lm_args, scorer = ["--hf-lm", str(gpt2[0])], HFScorer(gpt2[0])
    else:
        torch.manual_seed(3)
        model = LSTMLM(LSTMConfig(vocab_size=len(t["vocab"]), d_embed=8, d_hidden=12, n_layers=2)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.5, 0.5)
        save_lm(tmp_path / "lstm", model, t["vocab"])
        lm_args, scorer = ["--lm-dir", str(tmp_path / "lstm")], LSTMScorer(model, t["vocab"])
    lat_in = f"ark:gunzip -c {t['decode']}/lat.1.gz|"
    assert main(["rescore-lattice", "--old-lm", str(t["arpa"]), *lm_args, "--words", str(t["words"]),
                 "--lattices", lat_in, "--weight", "0.8", "--beam", "1000",
                 "--out-lattices", f"ark:|gzip -c >{tmp_path}/lat.1.gz"]) == 0
    inputs = read_lattice_dict(lat_in, kind="compact")
    out = dict(read_lattices(f"ark:gunzip -c {tmp_path}/lat.1.gz|"))
    old, syms = ArpaLM(t["arpa"]), t["symbols"]
    assert list(out) == list(inputs)
    for utt, lat in out.items():
        # The first pass's best path is the first path of the cover: every arc on it carries its own estimate,
        # so its rescored cost is exact, graph + w * (nn - ngram).
        first = best_path(inputs[utt], 0.1)
        words = syms.words(first.words)
        again = [q for q in nbest_paths(lat, 1000, 0.1) if syms.words(q.words) == words]
        expect = first.graph_cost + 0.8 * (scorer.costs([words])[0] - old.sentence_cost(words))
        assert len(again) == 1 and again[0].graph_cost == pytest.approx(expect, abs=1e-3)
