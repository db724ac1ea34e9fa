"""The packed format against committed files: a change of bit order, code offset, scale layout or header
breaks every saved model, and these tests (a round trip would not notice). ``fixtures/packed`` holds one
tiny model in format versions 1 and 2 and ``golden.json``, the codes and weights it must decode to (written
once by ``make_golden.py``)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.packed import (PACKED, load_packed, load_packed_for_inference, pack_codes,
                                       unpack_codes)
from asr_lm_quant.quant.packed_modules import PackedEmbedding, PackedLinear
from asr_lm_quant.quant.plan import group_view, split_group

HERE = Path(__file__).resolve().parent / "fixtures" / "packed"
GOLDEN = json.loads((HERE / "golden.json").read_text())
QUANTIZED = {n: g for n, g in GOLDEN["groups"].items() if g["bits"] != 32}


def reference_decode(data: bytes, bits: int, n: int) -> list[int]:
    """The format's definition, written out: code i is the unsigned ``bits``-bit number in bits
    ``i*bits .. i*bits+bits-1`` of the byte string, bit j of byte k being bit ``8k + j`` (least significant
    first); a code is that number minus ``2^(bits-1) - 1``, or for one bit ``-1``/``+1``."""
    out = []
    for i in range(n):
        u = sum(((data[(i * bits + j) // 8] >> ((i * bits + j) % 8)) & 1) << j for j in range(bits))
        out.append(2 * u - 1 if bits == 1 else u - (2 ** (bits - 1) - 1))
    return out


def flat(x):
    return [v for row in x for v in row] if x and isinstance(x[0], list) else list(x)


def test_fixture_covers_the_widths():
    assert sorted({g["bits"] for g in GOLDEN["groups"].values()}) == [1, 2, 3, 4, 8, 32]
    assert {g["per_row"] for g in QUANTIZED.values()} == {True, False}


@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_golden_bytes_are_the_documented_bit_order(name):
    g = QUANTIZED[name]
    codes = flat(g["codes"])
    data = bytes.fromhex(g["packed_hex"])
    assert len(data) == -(-len(codes) * g["bits"] // 8)
    assert reference_decode(data, g["bits"], len(codes)) == codes
    # the writer makes these bytes, the decoder reads them back
    assert pack_codes(torch.tensor(codes, dtype=torch.int32), g["bits"]).tobytes() == data
    assert unpack_codes(torch.frombuffer(bytearray(data), dtype=torch.uint8).numpy(), g["bits"],
                        len(codes)).tolist() == codes


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_files_hold_the_golden_codes_and_scales(version):
    t = load_file(str(HERE / version / PACKED))
    for name, g in QUANTIZED.items():
        assert t[f"codes.{name}"].numpy().tobytes().hex() == g["packed_hex"], name
        assert t[f"scales.{name}"].tolist() == g["scales"], name
    assert {k for k in t if k.startswith("float.")} == (
        {f"float.{n}" for n, g in GOLDEN["groups"].items() if g["bits"] == 32}
        | {f"float.{n}" for n in GOLDEN["float"]})


def expected_weight(g) -> torch.Tensor:
    w = torch.tensor(g["weights"], dtype=torch.float32)
    if g["bits"] != 32:  # the weights are scale * code, in float32
        scale = torch.tensor(g["scales"], dtype=torch.float32).reshape(-1, 1)
        assert torch.equal(torch.tensor(g["codes"], dtype=torch.float32) * scale, w)
    return w


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_load_packed_decodes_to_the_golden_weights(version):
    model, vocab, plan = load_packed(HERE / version)
    assert len(vocab) == GOLDEN["config"]["vocab_size"]
    for name, g in GOLDEN["groups"].items():
        assert torch.equal(group_view(model, name), expected_weight(g)), name
        assert plan.groups[name].bits == g["bits"] and plan.groups[name].per_row == g["per_row"]
    params = dict(model.named_parameters())
    for name, v in GOLDEN["float"].items():
        assert torch.equal(params[name].detach(), torch.tensor(v, dtype=torch.float32)), name


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_packed_inference_decodes_to_the_golden_weights(version):
    model, _, _ = load_packed_for_inference(HERE / version)
    assert isinstance(model.embed, PackedEmbedding) and isinstance(model.out, PackedLinear)
    dense = {"embed.weight": model.embed.matrix.dense()}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, PackedLinear) and mod_name != "out":
            dense[f"{mod_name}.weight"] = mod.matrix.dense()
    for name, g in GOLDEN["groups"].items():
        param, rows = split_group(name)
        r0, r1 = rows or (0, len(g["weights"]))
        assert torch.equal(dense[param][r0:r1], expected_weight(g)), name
    ids = torch.arange(GOLDEN["config"]["vocab_size"])
    assert torch.equal(model.embed(ids), dense["embed.weight"])


def test_v1_reader_checks_the_tensors_only(tmp_path):
    """Version 1 has no digest over words.txt (an edited vocabulary of the same size still loads), but its
    tensor digest holds: one flipped code byte is an error."""
    d = tmp_path / "v1"
    shutil.copytree(HERE / "v1", d)
    words = (d / "words.txt").read_text().replace("w9", "renamed")
    (d / "words.txt").write_text(words)
    _, vocab, _ = load_packed(d)
    assert "renamed" in vocab
    v2 = tmp_path / "v2"
    shutil.copytree(HERE / "v2", v2)
    (v2 / "words.txt").write_text(words)
    with pytest.raises(InputError, match="checksum"):
        load_packed(v2)
    data = bytearray((d / PACKED).read_bytes())
    data[-1] ^= 0x10  # the last tensor's last byte
    (d / PACKED).write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        load_packed(d)
