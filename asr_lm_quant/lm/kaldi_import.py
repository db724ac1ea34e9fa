"""Import a Kaldi pytorchnn LM (``steps/pytorchnn``: ``model.pt`` + ``words.txt``), Transformer or LSTM.

Kaldi's ``TransformerModel`` is post-norm ``nn.TransformerEncoder`` layers over a sqrt(d)-scaled embedding
plus sinusoidal positions, with a (usually tied) biased output layer: exactly our
:class:`~asr_lm_quant.lm.model.TransformerLM` with ``norm="post"``, ``final_norm=False``,
``scale_embedding=True``, ``max_len`` = the rows of its ``pe`` buffer. Sizes come from the tensor
shapes; the number of heads and the activation are not in the file and must be given
(Kaldi's defaults: 8 heads with ``--nhead 8``, ``gelu``). The file is read with ``weights_only=True``.

Kaldi's ``RNNModel`` with ``rnn_type="LSTM"`` is an embedding (``encoder``), an ``nn.LSTM`` (``rnn``, tensors
``weight_ih_lN`` [4H, in], ``weight_hh_lN`` [4H, H] and their biases per layer N) and a biased output layer
(``decoder``, tied to the embedding with ``--tied``): exactly our :class:`~asr_lm_quant.lm.lstm.LSTMLM`, every
size read from the shapes. GRU and plain RNN models are not supported.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.lstm import LSTMConfig, LSTMLM
from asr_lm_quant.lm.model import LMConfig, TransformerLM, sinusoidal_positions
from asr_lm_quant.text.vocab import UNK, Vocabulary
from asr_lm_quant.textio import read_lines, split_fields

_LAYER = re.compile(r"^transformer_encoder\.layers\.(\d+)\.(.+)$")
_RENAME = {
    "self_attn.in_proj_weight": "attn.in_proj.weight", "self_attn.in_proj_bias": "attn.in_proj.bias",
    "self_attn.out_proj.weight": "attn.out_proj.weight", "self_attn.out_proj.bias": "attn.out_proj.bias",
    "linear1.weight": "ff.fc1.weight", "linear1.bias": "ff.fc1.bias",
    "linear2.weight": "ff.fc2.weight", "linear2.bias": "ff.fc2.bias",
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
}


def read_kaldi_words(path) -> Vocabulary:
    """Kaldi pytorchnn vocabulary: the 0-based line order is the index (the id column is ignored)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "words file does not exist")
    words, seen = [], {}
    for n, line in read_lines(path):
        fields = split_fields(line)
        if not fields:
            continue
        if fields[0] in seen:
            raise InputError(path, f"word {fields[0]!r} repeats line {seen[fields[0]]}", line=n)
        seen[fields[0]] = n
        words.append(fields[0])
    for required in ("<s>", UNK):
        if required not in seen:
            raise InputError(path, f"lacks {required!r}, which the model needs (sentence boundary / OOV words)")
    return Vocabulary(words)


def load_kaldi_state(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise InputError(path, "model file does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for foreign or unsafe pickles
        why = (str(e).splitlines() or [type(e).__name__])[0]  # an empty file: EOFError with no message
        raise InputError(path, f"cannot read as a weights-only state_dict: {why}") from None
    if not isinstance(sd, dict) or "encoder.weight" not in sd:
        raise InputError(path, "not a Kaldi pytorchnn state_dict (no 'encoder.weight')")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise InputError(path, f"entry {k!r} is a {type(v).__name__}, not a tensor: not a state_dict", key=str(k))
        if not v.is_floating_point():
            raise InputError(path, f"tensor {k} has dtype {v.dtype}, not floating point", key=k)
    _dims(sd, "encoder.weight", 2, path)
    return sd


def _dims(sd: dict, key: str, ndim: int, path) -> tuple:
    """The shape of ``sd[key]``, which must exist, have ``ndim`` dimensions and no empty one."""
    if key not in sd:
        raise InputError(path, f"no tensor {key}", key=key)
    shape = tuple(sd[key].shape)
    if len(shape) != ndim or 0 in shape:
        raise InputError(path, f"tensor {key} has shape {list(shape)}; expected {ndim} non-empty dimensions",
                         key=key)
    return shape


def _check_shapes(ours: dict, model_type: str, model, path) -> None:
    """Every converted tensor has the shape the model built from the sizes expects; the error names the
    tensor as the Kaldi file calls it. Done once, before any tensor is used."""
    want = model.state_dict()
    for k, v in ours.items():
        if k not in want:
            continue  # load_state_dict(strict=True) names it
        if tuple(v.shape) != tuple(want[k].shape):
            name = kaldi_name(model_type, k)
            raise InputError(path, f"tensor {name} has shape {list(v.shape)}; a model of these sizes needs "
                                   f"{list(want[k].shape)}", key=name)


def convert_kaldi_state(sd: dict, *, n_heads: int = 8, activation: str = "gelu", path=None
                        ) -> tuple[LMConfig, dict]:
    """Map a Kaldi state_dict onto our parameter names; returns (config, state_dict)."""
    ntoken, ninp = _dims(sd, "encoder.weight", 2, path)
    layers = sorted({int(m.group(1)) for k in sd if (m := _LAYER.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise InputError(path, "no transformer_encoder.layers.N.* tensors (is this the LSTM model?)")
    for i in layers:
        for name, ndim in (("self_attn.in_proj_weight", 2), ("linear1.weight", 2), ("linear2.weight", 2)):
            _dims(sd, f"transformer_encoder.layers.{i}.{name}", ndim, path)
    nhid = sd["transformer_encoder.layers.0.linear1.weight"].shape[0]
    pe = sd.get("pos_encoder.pe")
    if pe is not None and (pe.dim() < 2 or pe.shape[0] == 0 or pe.numel() % pe.shape[0]
                           or pe.numel() // pe.shape[0] != ninp):
        raise InputError(path, f"pos_encoder.pe has shape {list(pe.shape)}; expected [positions, (1,) {ninp}]",
                         key="pos_encoder.pe")
    max_len = pe.shape[0] if pe is not None else 5000
    if pe is not None:  # our model recomputes the positions: they must be the standard sinusoid
        want = sinusoidal_positions(max_len, ninp)
        if pe.reshape(max_len, -1).shape != want.shape or not torch.allclose(pe.reshape(max_len, -1).float(), want,
                                                                             atol=1e-4):
            raise InputError(path, "pos_encoder.pe is not the standard sinusoidal position encoding")
    final_norm = "transformer_encoder.norm.weight" in sd
    tied = "decoder.weight" not in sd or (sd["decoder.weight"].shape == sd["encoder.weight"].shape
                                          and torch.equal(sd["decoder.weight"], sd["encoder.weight"]))
    eps = 1e-5
    try:
        cfg = LMConfig(vocab_size=ntoken, d_model=ninp, n_layers=len(layers), n_heads=n_heads, d_ff=nhid,
                       dropout=0.0, tie_embeddings=tied, norm="post", activation=activation, max_len=max_len,
                       scale_embedding=True, final_norm=final_norm, layer_norm_eps=eps)
    except ValueError as e:
        raise InputError(path, str(e)) from None
    out = {"embed.weight": sd["encoder.weight"]}
    used = {"encoder.weight", "pos_encoder.pe"}
    for k, v in sd.items():
        m = _LAYER.match(k)
        if m and m.group(2) in _RENAME:
            out[f"layers.{m.group(1)}.{_RENAME[m.group(2)]}"] = v
            used.add(k)
    if final_norm:
        if "transformer_encoder.norm.bias" not in sd:
            raise InputError(path, "no tensor transformer_encoder.norm.bias", key="transformer_encoder.norm.bias")
        out["final_norm.weight"] = sd["transformer_encoder.norm.weight"]
        out["final_norm.bias"] = sd["transformer_encoder.norm.bias"]
        used |= {"transformer_encoder.norm.weight", "transformer_encoder.norm.bias"}
    out["out.weight"] = sd.get("decoder.weight", sd["encoder.weight"])
    out["out.bias"] = sd.get("decoder.bias", torch.zeros(ntoken))
    used |= {"decoder.weight", "decoder.bias"}
    unknown = sorted(set(sd) - used)
    if unknown:
        raise InputError(path, f"unexpected tensors {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return cfg, {k: v.float() for k, v in out.items()}


_RNN = re.compile(r"^rnn\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")
_RNN_RENAME = {"weight_ih": "ih.weight", "bias_ih": "ih.bias", "weight_hh": "hh.weight", "bias_hh": "hh.bias"}


def convert_kaldi_lstm_state(sd: dict, *, path=None) -> tuple[LSTMConfig, dict]:
    """Map a Kaldi ``RNNModel`` (LSTM) state_dict onto our parameter names; returns (config, state_dict)."""
    ntoken, ninp = _dims(sd, "encoder.weight", 2, path)
    layers = sorted({int(m.group(2)) for k in sd if (m := _RNN.match(k))})
    if not layers or layers != list(range(len(layers))):
        raise InputError(path, "no rnn.weight_ih_lN tensors (is this the Transformer model?)")
    for i in layers:
        for name in ("weight_ih", "weight_hh"):
            _dims(sd, f"rnn.{name}_l{i}", 2, path)
    rows, cols = sd["rnn.weight_hh_l0"].shape
    if rows != 4 * cols:
        kind = {3: "a GRU", 1: "a plain RNN"}.get(rows // cols if cols else 0, "not an LSTM")
        raise InputError(path, f"rnn.weight_hh_l0 is {rows}x{cols}: {kind}; only LSTM models are supported",
                         key="rnn.weight_hh_l0")
    nhid = cols
    if "decoder.weight" not in sd:
        raise InputError(path, "no decoder.weight (the output layer)")
    _dims(sd, "decoder.weight", 2, path)
    tied = tuple(sd["decoder.weight"].shape) == (ntoken, ninp) and torch.equal(sd["decoder.weight"],
                                                                             sd["encoder.weight"])
    try:
        cfg = LSTMConfig(vocab_size=ntoken, d_embed=ninp, d_hidden=nhid, n_layers=len(layers), dropout=0.0,
                         tie_embeddings=tied)
    except ValueError as e:
        raise InputError(path, str(e)) from None
    out = {"embed.weight": sd["encoder.weight"], "out.weight": sd["decoder.weight"],
           "out.bias": sd.get("decoder.bias", torch.zeros(ntoken))}
    used = {"encoder.weight", "decoder.weight", "decoder.bias"}
    for k, v in sd.items():
        if m := _RNN.match(k):
            out[f"layers.{m.group(2)}.{_RNN_RENAME[m.group(1)]}"] = v
            used.add(k)
    unknown = sorted(set(sd) - used)
    if unknown:
        raise InputError(path, f"unexpected tensors {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    return cfg, {k: v.float() for k, v in out.items()}


MODEL_TYPES = ("Transformer", "LSTM")


def kaldi_name(model_type: str, ours: str) -> str:
    """Kaldi's name of our parameter ``ours``, to name a tensor in an error as the user's file names it."""
    fixed = {"embed.weight": "encoder.weight", "out.weight": "decoder.weight", "out.bias": "decoder.bias",
             "final_norm.weight": "transformer_encoder.norm.weight",
             "final_norm.bias": "transformer_encoder.norm.bias"}
    if ours in fixed:
        return fixed[ours]
    _, layer, rest = ours.split(".", 2)  # layers.N.rest
    if model_type == "LSTM":
        kind = {v: k for k, v in _RNN_RENAME.items()}[rest]
        return f"rnn.{kind}_l{layer}"
    return f"transformer_encoder.layers.{layer}.{ {v: k for k, v in _RENAME.items()}[rest]}"


def import_kaldi(model_pt, words_txt, *, model_type: str = "Transformer", n_heads: int = 8,
                 activation: str = "gelu") -> tuple[TransformerLM | LSTMLM, Vocabulary]:
    """Load a Kaldi pytorchnn model (``model_type``: Kaldi's ``--model``, Transformer or LSTM) and its
    vocabulary as our model (eval mode). ``n_heads`` and ``activation`` apply to the Transformer only."""
    if model_type not in MODEL_TYPES:
        raise InputError(None, f"model type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    sd = load_kaldi_state(model_pt)
    vocab = read_kaldi_words(words_txt)
    if model_type == "LSTM":
        cfg, ours = convert_kaldi_lstm_state(sd, path=model_pt)
        model = LSTMLM(cfg)
    else:
        cfg, ours = convert_kaldi_state(sd, n_heads=n_heads, activation=activation, path=model_pt)
        model = TransformerLM(cfg)
    if len(vocab) != cfg.vocab_size:
        raise InputError(words_txt, f"{len(vocab)} words, but {model_pt} has {cfg.vocab_size} embedding rows")
    _check_shapes(ours, model_type, model, model_pt)
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as e:
        raise InputError(model_pt, f"tensor shapes do not fit a {model_type}: {str(e).splitlines()[-1]}") from None
    return model.eval(), vocab
