"""Kaldi pytorchnn Transformer import, checked against that architecture rebuilt from its description."""

import json
import math

import pytest
import torch
import torch.nn as nn

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import load_lm
from asr_lm_quant.lm.kaldi_import import import_kaldi


class KaldiPositionalEncoding(nn.Module):
    def __init__(self, d_model, dropout=0.1, max_len=5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))  # [max_len, 1, d]

    def forward(self, x):
        return self.dropout(x + self.pe[:x.size(0), :])


class KaldiTransformerModel(nn.Module):
    """Sequence-first encoder-only LM as Kaldi's steps/pytorchnn model.py describes it."""

    def __init__(self, ntoken, ninp, nhead, nhid, nlayers, dropout=0.5, activation="gelu", tie_weights=True):
        super().__init__()
        self.ninp = ninp
        self.encoder = nn.Embedding(ntoken, ninp)
        self.pos_encoder = KaldiPositionalEncoding(ninp, dropout)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout, activation)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.decoder = nn.Linear(ninp, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.bias, -0.1, 0.1)

    def forward(self, src):  # [T, B]
        T = src.size(0)
        mask = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        x = self.pos_encoder(self.encoder(src) * math.sqrt(self.ninp))
        return self.decoder(self.transformer_encoder(x, mask))


def write_kaldi_words(path, words):
    # Kaldi-style symbol table; the id column need not match the line order (line order is the index)
    path.write_text("".join(f"{w} {i + 7}\n" for i, w in enumerate(words)))


@pytest.mark.parametrize("activation,tied", [("gelu", True), ("relu", False)])
def test_import_matches_kaldi_model(tmp_path, activation, tied):
    torch.manual_seed(0)
    words = ["<eps>", "<unk>", "a", "b", "c", "d", "e", "#0", "<s>", "</s>"]
    kaldi = KaldiTransformerModel(len(words), 16, 4, 24, 3, dropout=0.1, activation=activation,
                                  tie_weights=tied).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters so a mix-up of norm1/norm2 shows
        for name, p in kaldi.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.2)
    torch.save(kaldi.state_dict(), tmp_path / "model.pt")
    write_kaldi_words(tmp_path / "words.txt", words)
    model, vocab = import_kaldi(tmp_path / "model.pt", tmp_path / "words.txt", n_heads=4, activation=activation)
    assert vocab.words == words and vocab.bos == vocab.eos == 8
    assert model.cfg.norm == "post" and model.cfg.tie_embeddings == tied and model.cfg.n_layers == 3
    bos = vocab.bos
    sentences = [torch.randint(1, 7, (n,)) for n in (1, 4, 9, 13)]
    for s in sentences:
        inp = torch.cat([torch.tensor([bos]), s])  # <s> w1 .. wn, predicting w1 .. wn <s>
        tgt = torch.cat([s, torch.tensor([bos])])
        with torch.no_grad():
            ref = torch.log_softmax(kaldi(inp.unsqueeze(1))[:, 0], -1).gather(1, tgt[:, None])
            ours = torch.log_softmax(model(inp.unsqueeze(0))[0], -1).gather(1, tgt[:, None])
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # batch-first with padding at the end gives the same values
    batch = torch.full((2, 10), bos)
    batch[0, 1:5] = sentences[1]
    batch[1, 1:10] = sentences[2]
    with torch.no_grad():
        a = torch.log_softmax(model(batch), -1)[0, :5]
        b = torch.log_softmax(kaldi(batch[0, :5].unsqueeze(1))[:, 0], -1)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_cli_import_writes_model_dir(tmp_path, capsys):
    torch.manual_seed(1)
    words = ["<s>", "<unk>", "x", "y"]
    kaldi = KaldiTransformerModel(4, 8, 2, 8, 1).eval()
    torch.save(kaldi.state_dict(), tmp_path / "model.pt")
    write_kaldi_words(tmp_path / "words.txt", words)
    out = tmp_path / "lm"
    args = ["import-kaldi", "--model-pt", str(tmp_path / "model.pt"), "--words", str(tmp_path / "words.txt"),
            "--out", str(out), "--nhead", "2"]
    assert main(args) == 0
    model, vocab = load_lm(out)
    assert vocab.words == words and (out / "words.txt").read_text().splitlines()[2] == "x 2"
    inp = torch.tensor([[0, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(torch.log_softmax(model(inp), -1)[0],
                                   torch.log_softmax(kaldi(inp.T)[:, 0], -1), atol=1e-5, rtol=0)
    assert json.loads((out / "config.json").read_text())["imported_from"]["format"] == "kaldi-pytorchnn"
    capsys.readouterr()
    assert main(args) == 1 and "--overwrite" in capsys.readouterr().err


def test_import_errors(tmp_path):
    torch.manual_seed(0)
    kaldi = KaldiTransformerModel(4, 8, 2, 8, 1)
    torch.save(kaldi.state_dict(), tmp_path / "model.pt")
    write_kaldi_words(tmp_path / "w.txt", ["<s>", "<unk>", "x"])
    with pytest.raises(InputError, match="3 words, but .* has 4 embedding rows"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "w.txt", n_heads=2)
    write_kaldi_words(tmp_path / "w.txt", ["<s>", "a", "x", "y"])
    with pytest.raises(InputError, match="lacks '<unk>'"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "w.txt", n_heads=2)
    write_kaldi_words(tmp_path / "w.txt", ["<s>", "<unk>", "x", "x"])
    with pytest.raises(InputError, match="w.txt, line 4"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "w.txt", n_heads=2)
    write_kaldi_words(tmp_path / "w.txt", ["<s>", "<unk>", "x", "y"])
    with pytest.raises(InputError, match="divisible"):
        import_kaldi(tmp_path / "model.pt", tmp_path / "w.txt", n_heads=3)
    torch.save(kaldi, tmp_path / "whole.pt")  # a pickled module, not a state_dict: refused unread
    with pytest.raises(InputError, match="weights-only"):
        import_kaldi(tmp_path / "whole.pt", tmp_path / "w.txt", n_heads=2)
    sd = kaldi.state_dict()
    sd["pos_encoder.pe"] = sd["pos_encoder.pe"] * 0.5
    torch.save(sd, tmp_path / "pe.pt")
    with pytest.raises(InputError, match="standard sinusoidal"):
        import_kaldi(tmp_path / "pe.pt", tmp_path / "w.txt", n_heads=2)
    torch.save({"rnn.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="encoder.weight"):
        import_kaldi(tmp_path / "other.pt", tmp_path / "w.txt", n_heads=2)
