"""Packed models run packed: codes stay bit-packed in memory and the products decode them a chunk at a time,
giving the dequantized model's costs."""

import json

import numpy as np
import pytest
import torch

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.packed import PACKED, load_packed, load_packed_for_inference, save_packed
from asr_lm_quant.quant.packed_modules import PackedEmbedding, PackedLinear, decode_codes, valid_codes
from asr_lm_quant.quant.plan import QuantPlan, group_names, group_view
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.rescore.nnscore import NNScorer
from asr_lm_quant.text.vocab import CompactVocabulary, Vocabulary

V = 400
VOCAB = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(V - 2)])


def _packed_dir(tmp_path, *, tie=True, per_row=False, bands=3, bits=(1, 2, 3, 4, 8, 32), seed=0):
    torch.manual_seed(seed)
    cfg = LMConfig(vocab_size=V, d_model=64, n_layers=2, n_heads=4, d_ff=128, dropout=0.0, tie_embeddings=tie)
    model = TransformerLM(cfg).eval()
    names = group_names(model, bands)
    plan = QuantPlan.from_bits({n: bits[i % len(bits)] for i, n in enumerate(names)}, per_row=per_row)
    plan = quantize_model(model, plan)
    d = tmp_path / f"q_{tie}_{per_row}_{bands}_{len(bits)}"
    save_packed(d, model, plan, VOCAB)
    return d


def _hyps(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return [[f"w{rng.integers(V - 2)}" for _ in range(rng.integers(1, 14))] for _ in range(n)]


@pytest.mark.parametrize("tie,per_row,bands", [(True, False, 3), (False, True, 2), (True, True, None)])
def test_costs_equal_the_dequantized_model(tmp_path, tie, per_row, bands):
    d = _packed_dir(tmp_path, tie=tie, per_row=per_row, bands=bands)
    float_model, vocab, plan = load_packed(d)
    packed, compact, _ = load_packed_for_inference(d)
    # Scoring holds the vocabulary compactly; it answers as the plain one.
    assert isinstance(compact, CompactVocabulary) and list(compact.words) == vocab.words
    # The quantized matrices are modules over codes, not parameters: no float copy of them exists.
    assert isinstance(packed.embed, PackedEmbedding) and isinstance(packed.out, PackedLinear)
    assert all(isinstance(m, PackedLinear) for m in (packed.layers[0].attn.in_proj, packed.layers[1].ff.fc2))
    assert max(p.numel() for p in packed.parameters()) < 64 * 64
    for name in plan.groups:
        param = name.split("[")[0].rsplit(".", 1)[0]
        mod = packed.embed if param == "embed" else packed.get_submodule(param)
        assert torch.equal(mod.matrix.dense()[_rows(name, mod.matrix.rows)], group_view(float_model, name))
    hyps = _hyps() + [["w3", "not-a-word", "w7"]]
    for bf16, tol in ((False, 1e-5), (True, 1e-5)):
        a = NNScorer(float_model, vocab, bf16=bf16).costs(hyps)
        b = NNScorer(packed, compact, bf16=bf16).costs(hyps)
        assert np.abs(a - b).max() <= tol * np.abs(a).max(), (bf16, np.abs(a - b).max())
    tok = torch.randint(0, V, (3, 9))
    with torch.inference_mode():
        assert torch.allclose(float_model(tok), packed(tok), atol=1e-5, rtol=1e-5)


def _rows(name, n):
    if "[" not in name:
        return slice(0, n)
    a, b = name[name.index("[") + 1:-1].split(":")
    return slice(int(a), int(b))


def test_small_output_chunks_give_the_same_normaliser(tmp_path):
    d = _packed_dir(tmp_path)
    packed, _, _ = load_packed_for_inference(d)
    hyps = _hyps(50)
    for bf16 in (False, True):
        ref = NNScorer(packed, VOCAB, bf16=bf16).costs(hyps)
        small = NNScorer(packed, VOCAB, bf16=bf16, logits_bytes=32 * 4 * 64).costs(hyps)  # many vocab chunks
        assert np.abs(small - ref).max() < 1e-5 * np.abs(ref).max()


def test_memory_is_about_the_file(tmp_path):
    d = _packed_dir(tmp_path, bits=(2,), bands=None)
    packed, _, _ = load_packed_for_inference(d)
    held = sum(p.numel() * p.element_size() for p in packed.parameters())
    held += packed.embed.matrix.nbytes() + sum(m.matrix.nbytes() for m in packed.modules()
                                               if isinstance(m, PackedLinear) and m is not packed.out)
    assert held <= 1.05 * (d / PACKED).stat().st_size


def test_decoding_matches_the_file_format():
    from asr_lm_quant.quant.packed import pack_codes, unpack_codes
    g = torch.Generator().manual_seed(1)
    for bits in (1, 2, 3, 4, 5, 6, 7, 8):
        k = 1 if bits == 1 else 2 ** (bits - 1) - 1
        codes = torch.randint(-k, k + 1, (999,), generator=g)
        if bits == 1:
            codes = torch.where(codes >= 0, 1, -1)
        buf = pack_codes(codes, bits)
        assert torch.equal(decode_codes(torch.from_numpy(buf), bits, 999).long(), codes)
        assert torch.equal(unpack_codes(buf, bits, 999).long(), codes)
        assert valid_codes(torch.from_numpy(buf), bits, 999)
        if bits > 1:  # the unsigned value 2^b - 1 is no code
            assert not valid_codes(torch.full((len(buf),), 255, dtype=torch.uint8), bits, 999)


def test_codes_outside_the_table_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    d = _packed_dir(tmp_path, bits=(2,), bands=None)
    path = d / PACKED
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    t = load_file(str(path))
    key = next(k for k in t if k.startswith("codes."))
    t[key][0] = 0xFF  # unsigned 3 = code 2: not in the ternary table
    save_file(t, str(path), metadata=meta)
    with pytest.raises(InputError, match="checksum mismatch"):
        load_packed_for_inference(d)
    # With a checksum that matches (a writer with a bug, not a damaged file), the table check finds it.
    from asr_lm_quant.lm.files import content_digest
    meta["sha256"] = content_digest(t, meta["plan"], meta["config"], "\n".join(VOCAB.words))
    save_file(t, str(path), metadata=meta)
    with pytest.raises(InputError, match="codes outside the 2-bit table"):
        load_packed_for_inference(d)
    with pytest.raises(InputError, match="codes outside the 2-bit table"):
        load_packed(d)


def test_ppl_command_scores_packed(tmp_path, capsys):
    d = _packed_dir(tmp_path)
    text = tmp_path / "t.txt"
    text.write_text("\n".join(" ".join(h) for h in _hyps(40)) + "\n")
    assert main(["ppl", "--model", str(d), "--text", str(text)]) == 0
    got = json.loads(capsys.readouterr().out)
    from asr_lm_quant.lm.ppl import perplexity
    model, vocab, _ = load_packed(d)
    ref = perplexity(model, vocab, text, progress=False)
    assert got["ppl"] == pytest.approx(ref["ppl"], rel=1e-5)
