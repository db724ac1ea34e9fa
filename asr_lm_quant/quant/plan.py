"""The quantization plan: weight group name -> precision (bits, per-row flag) and, once fitted, scales.

One ``QuantPlan`` is shared by every method (PTQ, STE, ADMM, Hessian allocation, search), by the packed
files, by loading and by reports. Weight groups are every ``nn.Linear`` weight of every layer and the
embedding matrix (tied with the output layer, so one group); everything else (biases, LayerNorms) stays
32-bit float and is counted in every size figure.

A vocabulary-sized matrix (the embedding, an untied output layer) can also be split into row bands,
``embed.weight[0:667]``, ``embed.weight[667:2000]`` ...: with a frequency-ordered vocabulary the bands are
word-frequency classes, and mixed precision can give frequent words more bits than rare ones. A plan's
groups must tile every weight matrix exactly (whole, or bands covering all rows in order).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError, read_json_file
from asr_lm_quant.quant.quantizers import FLOAT_BITS, check_bits

FORMAT = "asr-lm-quant-plan"


def weight_groups(model: nn.Module) -> dict[str, nn.Parameter]:
    """Quantizable weights by parameter name, in model order; a tied weight appears once (first name)."""
    groups, seen = {}, set()
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Embedding)):
            p = mod.weight
            if id(p) in seen:
                continue
            seen.add(id(p))
            groups[f"{mod_name}.weight" if mod_name else "weight"] = p
    return groups


def split_group(name: str) -> tuple[str, tuple[int, int] | None]:
    """``"embed.weight[0:667]"`` -> ``("embed.weight", (0, 667))``; a whole matrix -> ``(name, None)``."""
    if not name.endswith("]") or "[" not in name:
        return name, None
    param, rows = name[:-1].rsplit("[", 1)
    try:
        a, b = (int(x) for x in rows.split(":"))
    except ValueError:
        raise ValueError(f"bad row band in group name {name!r} (expected NAME[start:end])") from None
    return param, (a, b)


def band_edges(rows: int, bands) -> list[int]:
    """Row boundaries ``[0, ..., rows]`` for ``bands``: an int K gives K bands that double in size (word
    frequencies fall roughly as a power law: a small first band of the most frequent words, the long tail
    of rare words last); a list gives the inner boundaries themselves."""
    if isinstance(bands, int):
        if bands < 1:
            raise ValueError(f"the number of bands must be positive, not {bands}")
        first = rows / (2 ** bands - 1)
        edges = [0] + [round(first * (2 ** k - 1)) for k in range(1, bands)] + [rows]
    else:
        edges = [0] + [int(x) for x in bands] + [rows]
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"band boundaries {edges} are not increasing within 0..{rows}")
    return edges


def group_names(model: nn.Module, bands=None) -> list[str]:
    """Weight group names: every weight matrix whole, except vocabulary-sized ones split into ``bands``
    (see :func:`band_edges`) when given."""
    vocab = getattr(getattr(model, "cfg", None), "vocab_size", None)
    names = []
    for n, p in weight_groups(model).items():
        if bands in (None, 1) or p.shape[0] != vocab:
            names.append(n)
            continue
        e = band_edges(p.shape[0], bands)
        names.extend(f"{n}[{a}:{b}]" for a, b in zip(e, e[1:]))
    return names


def group_view(model: nn.Module, name: str) -> torch.Tensor:
    """The weights of one group: the parameter, or a view of its rows (writes go through to the model)."""
    param, rows = split_group(name)
    p = model.get_parameter(param)
    return p if rows is None else p[rows[0]:rows[1]]


def group_views(model: nn.Module, names) -> dict[str, torch.Tensor]:
    return {n: group_view(model, n) for n in names}


def assemble(model: nn.Module, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-group tensors -> whole parameters (bands concatenated in row order), for ``functional_call``."""
    parts: dict[str, list] = {}
    for n, t in values.items():
        param, rows = split_group(n)
        parts.setdefault(param, []).append((rows[0] if rows else 0, t))
    return {p: (ts[0][1] if len(ts) == 1 else torch.cat([t for _, t in sorted(ts, key=lambda x: x[0])]))
            for p, ts in parts.items()}


def float_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters that stay 32-bit (everything not in a weight group)."""
    ids = {id(p) for p in weight_groups(model).values()}
    return {n: p for n, p in model.named_parameters() if id(p) not in ids}


@dataclass
class GroupPlan:
    bits: int
    per_row: bool = False
    scales: list[float] | None = None  # fitted scales (one, or one per row); None before fitting

    def to_dict(self):
        d = {"bits": self.bits, "per_row": self.per_row}
        if self.scales is not None:
            d["scales"] = self.scales
        return d


@dataclass
class QuantPlan:
    groups: dict[str, GroupPlan] = field(default_factory=dict)

    # ---- construction
    @classmethod
    def uniform(cls, model: nn.Module, bits: int, per_row: bool = False, bands=None) -> "QuantPlan":
        check_bits(bits)
        return cls({n: GroupPlan(bits, per_row) for n in group_names(model, bands)})

    @classmethod
    def from_bits(cls, bits: dict[str, int], per_row: bool = False) -> "QuantPlan":
        return cls({n: GroupPlan(check_bits(b), per_row) for n, b in bits.items()})

    def bits(self) -> dict[str, int]:
        return {n: g.bits for n, g in self.groups.items()}

    def without_scales(self) -> "QuantPlan":
        return QuantPlan({n: GroupPlan(g.bits, g.per_row) for n, g in self.groups.items()})

    def set_scale(self, name: str, scale: torch.Tensor | None):
        self.groups[name].scales = None if scale is None else [float(x) for x in scale.reshape(-1).tolist()]

    def scale_tensor(self, name: str) -> torch.Tensor:
        g = self.groups[name]
        if g.scales is None:
            raise ValueError(f"group {name} has no fitted scales")
        return torch.tensor(g.scales, dtype=torch.float32).reshape(-1, 1)

    # ---- validation
    def validate(self, model: nn.Module, source=None):
        """Raise InputError naming the groups if the plan does not match ``model``'s weight groups."""
        have = weight_groups(model)
        covered: dict[str, list] = {}
        extra = []
        for n in self.groups:
            try:
                param, rows = split_group(n)
            except ValueError as e:
                raise InputError(source, str(e), key=n) from None
            if param not in have:
                extra.append(n)
                continue
            covered.setdefault(param, []).append(rows or (0, have[param].shape[0]))
        for param, spans in covered.items():
            spans.sort()
            ends = [0] + [b for _, b in spans]
            if any(a != e for (a, _), e in zip(spans, ends)) or ends[-1] != have[param].shape[0]:
                raise InputError(source, f"the plan's row bands of {param} do not tile its "
                                 f"{have[param].shape[0]} rows: {spans}")
        missing = [n for n in have if n not in covered]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"model groups missing from the plan: {', '.join(missing)}")
            if extra:
                parts.append(f"plan groups not in the model: {', '.join(extra)}")
            raise InputError(source, "quantization plan does not match the model: " + "; ".join(parts))
        for n, g in self.groups.items():
            try:
                check_bits(g.bits)
            except ValueError as e:
                raise InputError(source, str(e), key=n) from None
            if g.scales is not None and g.bits != FLOAT_BITS:
                want = group_view(model, n).shape[0] if g.per_row else 1
                if len(g.scales) != want:
                    raise InputError(source, f"{len(g.scales)} scales, expected {want}", key=n)

    # ---- sizes
    def size_report(self, model: nn.Module) -> dict:
        """Bits per group, the ideal size (code bits / 8 + 32-bit parameters, in bytes), scale bytes, the
        32-bit model size and the compression ratio."""
        self.validate(model)
        wg = group_views(model, self.groups)
        groups = {}
        code_bits = scale_count = float_in_groups = 0
        for n, p in wg.items():
            g = self.groups[n]
            n_el = p.numel()
            if g.bits == FLOAT_BITS:
                float_in_groups += n_el
                nscale = 0
            else:
                code_bits += n_el * g.bits
                nscale = p.shape[0] if g.per_row else 1
            scale_count += nscale
            groups[n] = {"numel": n_el, "bits": g.bits, "per_row": g.per_row, "scales": nscale,
                         "bytes": n_el * g.bits / 8}
        n_nongroup = sum(p.numel() for p in float_parameters(model).values())
        n_group = sum(p.numel() for p in wg.values())
        ideal = code_bits / 8 + 4 * (n_nongroup + float_in_groups)
        fp32 = 4 * (n_group + n_nongroup)
        return {
            "groups": groups,
            "group_params": n_group,
            "float_params": n_nongroup,
            "avg_bits": sum(p.numel() * self.groups[n].bits for n, p in wg.items()) / n_group,
            "ideal_bytes": ideal,
            "scale_bytes": 4 * scale_count,
            "fp32_bytes": fp32,
            "compression": fp32 / ideal,
        }

    # ---- (de)serialisation
    def to_dict(self) -> dict:
        return {"format": FORMAT, "groups": {n: g.to_dict() for n, g in self.groups.items()}}

    @classmethod
    def from_dict(cls, d: dict, source=None) -> "QuantPlan":
        if not isinstance(d, dict) or not isinstance(d.get("groups"), dict):
            raise InputError(source, "not a quantization plan (no 'groups' object)")
        groups = {}
        for n, g in d["groups"].items():
            try:
                bits = check_bits(int(g["bits"]))
                scales = g.get("scales")
                if scales is not None:
                    scales = [float(x) for x in scales]
                groups[n] = GroupPlan(bits, bool(g.get("per_row", False)), scales)
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(source, f"bad group entry: {e}", key=n) from None
        return cls(groups)

    def save(self, path):
        with atomic_open(path) as f:
            json.dump(self.to_dict(), f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path) -> "QuantPlan":
        return cls.from_dict(read_json_file(path, "plan file"), source=path)
