"""Packed quantized model directories, and loading of any LM directory.

A packed directory holds ``config.json`` (the architecture, as in a plain model dir, plus ``"quantized": true``),
``words.txt``, ``plan.json`` (the plan with its scales, for people and reports) and ``model.packed.safetensors``:

- ``codes.<group>``: uint8, the group's integer codes bit-packed at its precision (code + kmax as an unsigned
  b-bit number; for 1 bit, 1 = +alpha), little-endian bit order, row-major;
- ``scales.<group>``: float32, one scale or one per row;
- ``float.<name>``: the 32-bit parameters (biases, LayerNorms, groups the plan keeps in float).

The safetensors metadata carries the plan (bits, per-row flags), the model config, and a SHA-256 over all
tensor bytes, that plan, that config and the vocabulary, so a corrupt or truncated file, or an edited
``config.json`` or ``words.txt``, is an error rather than a silently wrong model (format version 2; files of
version 1 have a digest of the tensors only, and their config.json is checked against the embedded config). Loading rebuilds the
weights with the same ``dequantize`` product as quantization did, so they are bit-identical.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from safetensors.torch import save_file

from asr_lm_quant.atomic import atomic_path, atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import CONFIG, VOCAB, content_digest, load_config, load_lm
from asr_lm_quant.lm.arch import build_model, config_from_dict
from asr_lm_quant.lm.lstm import LSTMLM
from asr_lm_quant.lm.model import TransformerLM
from asr_lm_quant.quant.plan import QuantPlan, float_parameters, group_view, group_views
from asr_lm_quant.quant.quantizers import FLOAT_BITS, dequantize, kmax, quantize_codes
from asr_lm_quant.text.vocab import CompactVocabulary, Vocabulary

PACKED = "model.packed.safetensors"
PLAN = "plan.json"
FORMAT = "asr-lm-quant-packed"
VERSION = "2"


# ---- bit packing
def pack_codes(codes: torch.Tensor, bits: int) -> np.ndarray:
    """Integer codes -> uint8 array of ceil(n * bits / 8) bytes."""
    c = codes.reshape(-1).to(torch.int64).numpy()
    u = (c > 0).astype(np.uint32) if bits == 1 else (c + kmax(bits)).astype(np.uint32)
    if bits == 8:
        return u.astype(np.uint8)
    planes = ((u[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little")


def unpack_codes(buf: np.ndarray, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int32 codes (flat)."""
    if bits == 8:
        u = buf[:numel].astype(np.int32)
    else:
        planes = np.unpackbits(buf, count=numel * bits, bitorder="little").reshape(numel, bits)
        u = (planes.astype(np.int32) << np.arange(bits, dtype=np.int32)).sum(axis=1, dtype=np.int32)
    c = (2 * u - 1) if bits == 1 else (u - kmax(bits))
    return torch.from_numpy(c.astype(np.int32))


def vocab_text(vocab: Vocabulary) -> str:
    return vocab.text()


# ---- saving
def save_packed(model_dir, model: TransformerLM, plan: QuantPlan, vocab: Vocabulary, extra: dict | None = None):
    """Write a packed directory. Every quantized group of ``model`` must already lie on its table with the
    plan's scales (e.g. after :func:`asr_lm_quant.quant.ptq.quantize_model`); otherwise this is an error."""
    plan.validate(model)
    model_dir = Path(model_dir)
    tensors, wg = {}, group_views(model, plan.groups)
    for name, p in wg.items():
        g = plan.groups[name]
        w = p.detach().cpu().float()
        if g.bits == FLOAT_BITS:
            tensors[f"float.{name}"] = w.contiguous()
            continue
        scale = plan.scale_tensor(name)
        codes = quantize_codes(w, g.bits, scale, g.per_row)
        if not torch.equal(dequantize(codes, scale, g.per_row), w):
            raise ValueError(f"group {name} is not on its {g.bits}-bit table with the plan's scales "
                             "(quantize the model with this plan before packing)")
        tensors[f"codes.{name}"] = torch.from_numpy(pack_codes(codes, g.bits))
        tensors[f"scales.{name}"] = scale.reshape(-1).contiguous()
    for name, p in float_parameters(model).items():
        tensors[f"float.{name}"] = p.detach().cpu().float().contiguous()
    plan_json, cfg_json = json.dumps(plan.without_scales().to_dict()), json.dumps(model.cfg.to_dict())
    meta = {"format": FORMAT, "version": VERSION, "plan": plan_json, "config": cfg_json,
            "sha256": content_digest(tensors, plan_json, cfg_json, vocab_text(vocab))}
    model_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(model_dir / PACKED) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    vocab.save(model_dir / VOCAB)
    plan.save(model_dir / PLAN)
    with atomic_open(model_dir / CONFIG) as f:
        json.dump({"model": model.cfg.to_dict(), "quantized": True, **(extra or {})}, f, indent=2)


# ---- loading
_DTYPES = {"U8": torch.uint8, "I8": torch.int8, "I32": torch.int32, "I64": torch.int64, "F32": torch.float32,
           "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def _safetensors_views(path: Path):
    """``(metadata, tensors)`` of a safetensors file read once into memory, every tensor a view of that one
    buffer (the library's loader keeps a second copy while it copies out of its mapping). The format: an
    8-byte little-endian header length, a JSON header of ``name -> {dtype, shape, data_offsets}`` (offsets
    into the data that follows), and the data."""
    data = bytearray(path.stat().st_size)
    with open(path, "rb") as f:
        if f.readinto(data) != len(data):
            raise InputError(path, "could not read the whole file")
    hlen = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(bytes(data[8:8 + hlen]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, f"corrupt packed model: bad header ({e})", offset=8) from None
    if not isinstance(header, dict):
        raise InputError(path, "corrupt packed model: the header is not a JSON object", offset=8)
    meta = header.pop("__metadata__", None) or {}
    base, tensors = 8 + hlen, {}
    for name, info in header.items():
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = [int(x) for x in info["shape"]]
            a, b = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise InputError(path, f"corrupt packed model: bad entry for tensor {name!r}", offset=8) from None
        n = math.prod(shape)
        if not 0 <= a <= b <= len(data) - base or b - a != n * dtype.itemsize or a % dtype.itemsize:
            raise InputError(path, f"corrupt or truncated packed model: tensor {name!r} at bytes {a}:{b} of "
                                   f"{len(data) - base}", key=name, offset=base + a)
        tensors[name] = (torch.frombuffer(data, dtype=dtype, count=n, offset=base + a) if n
                         else torch.empty(0, dtype=dtype)).reshape(shape)
    return meta, tensors


def _read_packed(path: Path, vocab: Vocabulary | None = None):
    if not path.exists():
        raise InputError(path, "packed model file does not exist")
    size = path.stat().st_size
    if size < 8:
        raise InputError(path, f"truncated: {size} bytes, not even a safetensors header length", offset=size)
    with open(path, "rb") as f:
        hlen = int.from_bytes(f.read(8), "little")
    if 8 + hlen > size:
        raise InputError(path, f"truncated: header says {hlen} bytes but the file has {size}", offset=size)
    meta, tensors = _safetensors_views(path)
    if meta.get("format") != FORMAT:
        raise InputError(path, f"not a packed asr-lm-quant model (format {meta.get('format')!r})", key="format")
    if meta.get("version") == "1":
        digest = content_digest(tensors)
    elif meta.get("version") == VERSION:
        digest = content_digest(tensors, meta.get("plan", ""), meta.get("config", ""),
                         vocab_text(vocab) if vocab is not None else "")
    else:
        raise InputError(path, f"packed format version {meta.get('version')!r} is not one this release reads",
                         key="version")
    if digest != meta.get("sha256"):
        raise InputError(path, "checksum mismatch: the file is corrupt, or the directory's words.txt is not the "
                               "one it was saved with", key="sha256")
    return meta, tensors


def _skeleton(cfg) -> TransformerLM | LSTMLM:
    """A model of ``cfg`` made without running its initialisers: its weights are ``torch.empty``
    tensors whose pages are never touched (so not resident), to be replaced by packed modules. (The meta
    device would do too, but its operations pull tens of MB of torch internals into memory.)"""
    classes = (nn.Linear, nn.Embedding, nn.LayerNorm, TransformerLM, LSTMLM)
    saved = [c.__dict__["reset_parameters"] for c in classes]
    try:
        for c in classes:
            c.reset_parameters = lambda self: None
        return build_model(cfg)
    finally:
        for c, f in zip(classes, saved):
            c.reset_parameters = f


def _open_packed(model_dir: Path, compact_vocab: bool = False):
    """Read and check a packed directory: ``(config, vocabulary, plan, tensors, path, skeleton model)``;
    ``compact_vocab``: the vocabulary as a :class:`CompactVocabulary` (for scoring)."""
    path = model_dir / PACKED
    # Compact first, before anything else is allocated, so the plain one's heap can go back.
    vocab = (CompactVocabulary if compact_vocab else Vocabulary).load(model_dir / VOCAB)
    meta, tensors = _read_packed(path, vocab)
    cfg = load_config(model_dir)
    try:
        embedded = config_from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise InputError(path, f"bad config metadata: {e}", key="config") from None
    if embedded != cfg:
        raise InputError(model_dir / CONFIG, f"architecture differs from the one the packed model was saved with "
                                             f"({_config_difference(cfg, embedded)}): edited by hand?")
    try:
        plan = QuantPlan.from_dict(json.loads(meta["plan"]), source=path)
    except (KeyError, json.JSONDecodeError) as e:
        raise InputError(path, f"bad plan metadata: {e}", key="plan") from None
    if len(vocab) != cfg.vocab_size:
        raise InputError(model_dir / VOCAB, f"{len(vocab)} words but the model expects {cfg.vocab_size}")
    skeleton = _skeleton(cfg)
    plan.validate(skeleton, source=path)
    return cfg, vocab, plan, tensors, path, skeleton


def load_packed(model_dir, device="cpu") -> tuple[TransformerLM, Vocabulary, QuantPlan]:
    """Load a packed directory as an ordinary float model: the dequantized weights (eval mode), its
    vocabulary and its plan (with scales). For training and inspection; rescoring uses
    :func:`load_packed_for_inference`, which keeps the weights packed."""
    model_dir = Path(model_dir)
    cfg, vocab, plan, tensors, path, _ = _open_packed(model_dir)
    model = build_model(cfg)
    wg = group_views(model, plan.groups)
    state = {}
    for name, p in wg.items():
        g = plan.groups[name]
        if g.bits == FLOAT_BITS:
            state[name] = _get(tensors, f"float.{name}", path, p.shape)
            continue
        buf = _get(tensors, f"codes.{name}", path, (math.ceil(p.numel() * g.bits / 8),))
        nscale = p.shape[0] if g.per_row else 1
        scale = _get(tensors, f"scales.{name}", path, (nscale,)).reshape(-1, 1)
        codes = unpack_codes(buf.numpy(), g.bits, p.numel()).reshape(p.shape)
        if g.bits > 1 and int(codes.abs().max()) > kmax(g.bits):
            raise InputError(path, f"codes outside the {g.bits}-bit table", key=f"codes.{name}")
        state[name] = dequantize(codes, scale, g.per_row)
        plan.set_scale(name, scale)
    for name, p in float_parameters(model).items():
        state[name] = _get(tensors, f"float.{name}", path, p.shape)
    with torch.no_grad():
        for name, t in state.items():
            group_view(model, name).copy_(t)
    return model.to(device).eval(), vocab, plan


def _config_difference(a, b) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da.get(k)!r} vs {db.get(k)!r}" for k in sorted(set(da) | set(db))
                     if da.get(k) != db.get(k))


def _get(tensors, key, path, shape):
    if key not in tensors:
        raise InputError(path, "tensor missing from the packed model", key=key)
    t = tensors[key]
    if tuple(t.shape) != tuple(shape):
        raise InputError(path, f"shape {tuple(t.shape)}, expected {tuple(shape)}", key=key)
    return t


def load_packed_for_inference(model_dir, device="cpu") -> tuple[TransformerLM, Vocabulary, QuantPlan]:
    """Load a packed directory with its quantized weights kept packed in memory (PackedLinear and
    PackedEmbedding in place of nn.Linear and nn.Embedding): the codes take what they take in the file, and
    no float copy of a quantized matrix is ever made. Costs equal :func:`load_packed`'s model's."""
    from asr_lm_quant.quant.packed_modules import PackedEmbedding, PackedLinear, PackedMatrix, Segment, valid_codes
    from asr_lm_quant.quant.plan import split_group, weight_groups

    model_dir = Path(model_dir)
    cfg, vocab, plan, tensors, path, model = _open_packed(model_dir, compact_vocab=True)
    dev = torch.device(device)
    params = weight_groups(model)
    segments: dict[str, list] = {n: [] for n in params}
    for name, g in plan.groups.items():
        param, rows = split_group(name)
        shape = params[param].shape
        r0, r1 = rows or (0, shape[0])
        n = (r1 - r0) * shape[1]
        if g.bits == FLOAT_BITS:
            w = _get(tensors, f"float.{name}", path, (r1 - r0, shape[1]))
            segments[param].append(Segment(r0, r1, g.bits, g.per_row, None, None, w.to(dev)))
            continue
        buf = _get(tensors, f"codes.{name}", path, (math.ceil(n * g.bits / 8),))
        scale = _get(tensors, f"scales.{name}", path, ((r1 - r0) if g.per_row else 1,)).reshape(-1)
        if not valid_codes(buf, g.bits, n):
            raise InputError(path, f"codes outside the {g.bits}-bit table", key=f"codes.{name}")
        plan.set_scale(name, scale)
        segments[param].append(Segment(r0, r1, g.bits, g.per_row, buf.to(dev), scale.float().to(dev), None))
    matrices = {}
    for param, segs in segments.items():
        try:
            matrices[param] = PackedMatrix(params[param].shape[0], params[param].shape[1], segs)
        except ValueError as e:
            raise InputError(path, f"cannot keep {param} packed: {e}", key=param) from None
    floats = {n: _get(tensors, f"float.{n}", path, tuple(p.shape)).to(dev)
              for n, p in float_parameters(model).items()}
    for mod_name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear):
            mat = matrices[f"{mod_name}.weight"] if f"{mod_name}.weight" in matrices else matrices["embed.weight"]
            model.set_submodule(mod_name, PackedLinear(mat, floats.pop(f"{mod_name}.bias", None)))
        elif isinstance(mod, nn.Embedding):
            model.set_submodule(mod_name, PackedEmbedding(matrices[f"{mod_name}.weight"]))
    for name, t in floats.items():
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner).register_parameter(leaf, nn.Parameter(t, requires_grad=False))
    return model.eval(), vocab, plan


def load_lm_for_inference(path, device="cpu") -> tuple[TransformerLM, Vocabulary]:
    """A model directory for scoring: a packed one stays packed, a plain one is loaded as it is."""
    if is_packed(path):
        model, vocab, _ = load_packed_for_inference(path, device)
    else:
        model, vocab = load_lm(path, device)
    release_freed_memory()
    return model, vocab


def release_freed_memory() -> None:
    """Hand the heap's freed pages back to the system. Loading reads, checks and decodes through temporaries
    that glibc keeps once freed; for a small packed model they would be most of the process's memory growth
    (measured: a 6.9 MB 2-bit file, 19.1 MB resident after loading, 12.8 MB after this). No-op elsewhere."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def is_packed(model_dir) -> bool:
    return (Path(model_dir) / PACKED).exists()


def load_any_lm(path, device="cpu") -> tuple[TransformerLM, Vocabulary]:
    """Load a plain model directory (``lm.files``) or a packed quantized one (dequantized), in eval mode."""
    if is_packed(path):
        model, vocab, _ = load_packed(path, device)
        return model, vocab
    return load_lm(path, device)


def inspect_packed(model_dir) -> dict:
    """Per-group bits, scales and sizes, the file size and its overhead over the ideal size. ``compression``
    is the 32-bit model's size over the file's, as ``quantize`` reports it; ``ideal_compression`` over the
    ideal size (code bits and 32-bit parameters only: no scales, no header)."""
    model_dir = Path(model_dir)
    model, _, plan = load_packed(model_dir)
    rep = plan.size_report(model)
    for name, g in rep["groups"].items():
        sc = plan.groups[name].scales
        if sc:
            g["scale_min"], g["scale_max"] = min(sc), max(sc)
    file_bytes = (model_dir / PACKED).stat().st_size
    rep["file_bytes"] = file_bytes
    rep["overhead"] = file_bytes / rep["ideal_bytes"] - 1
    rep["ideal_compression"] = rep["compression"]
    rep["compression"] = rep["fp32_bytes"] / file_bytes
    return rep


def format_inspect(rep: dict) -> str:
    lines = [f"{'group':40s} {'bits':>4s} {'row':>3s} {'params':>10s} {'bytes':>12s} {'scales':>6s} "
             f"{'scale min':>10s} {'scale max':>10s}"]
    for name, g in rep["groups"].items():
        lines.append(f"{name:40s} {g['bits']:4d} {'y' if g['per_row'] else 'n':>3s} {g['numel']:10d} "
                     f"{g['bytes']:12.0f} {g['scales']:6d} {g.get('scale_min', float('nan')):10.4g} "
                     f"{g.get('scale_max', float('nan')):10.4g}")
    lines.append(f"32-bit parameters: {rep['float_params']} ({4 * rep['float_params']} bytes)")
    lines.append(f"average bits {rep['avg_bits']:.3f}; ideal {rep['ideal_bytes'] / 1e6:.4f} MB; file "
                 f"{rep['file_bytes'] / 1e6:.4f} MB (overhead {100 * rep['overhead']:.2f}%); 32-bit model "
                 f"{rep['fp32_bytes'] / 1e6:.4f} MB; compression {rep['compression']:.2f}x (of the file; ideal "
                 f"{rep['ideal_compression']:.2f}x)")
    return "\n".join(lines)
