"""PNG plots (matplotlib, Agg): Hessian traces and KL sensitivities per group, chosen bits per group, size vs
perplexity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asr_lm_quant.atomic import atomic_path  # noqa: E402
from asr_lm_quant.quant.plan import split_group  # noqa: E402


def _short(name: str) -> str:
    return name.replace(".weight", "").replace("layers.", "L").replace("attn.", "").replace("ff.", "")


def _save(fig, path):
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_traces(traces: dict[str, float], path, stderr: dict[str, float] | None = None):
    names = list(traces)
    fig, ax = plt.subplots(figsize=(max(5, 0.4 * len(names)), 3.5))
    vals = [max(traces[n], 1e-12) for n in names]
    ax.bar(range(len(names)), vals, yerr=[stderr[n] for n in names] if stderr else None, color="tab:blue")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=70, fontsize=7)
    ax.set_ylabel("Hessian trace (Hutchinson)")
    ax.set_title("Hessian trace per weight group")
    _save(fig, path)


def plot_kl(kl: dict[str, dict], path):
    """Lines of the KL sensitivity of each weight group, one per candidate precision (log scale; a KL of 0,
    where the table reproduces the weights, sits at the bottom of the axis)."""
    names = list(kl)
    cands = sorted({int(b) for v in kl.values() for b in v})
    fig, ax = plt.subplots(figsize=(max(5, 0.4 * len(names)), 3.5))
    for b in cands:
        vals = [kl[n].get(str(b), kl[n].get(b)) for n in names]
        ax.plot(range(len(names)), [max(v, 1e-12) if v is not None else float("nan") for v in vals], marker="o",
                label=f"{b} bits")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=70, fontsize=7)
    ax.set_ylabel("KL(full precision || group at b bits), nats/token")
    ax.set_title("KL sensitivity per weight group")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_bits(bits_by_method: dict[str, dict[str, int]], path):
    """Bars of bits per weight group, one colour per system; systems may group differently (row bands,
    deeper models): every group name any of them has gets a slot, a band taking its whole matrix's bits
    where a system did not split it."""
    methods = list(bits_by_method)
    names = list(dict.fromkeys(n for b in bits_by_method.values() for n in b))

    def bits_of(bits, name):
        return bits[name] if name in bits else bits.get(split_group(name)[0], 0)

    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names)), 3.5))
    for i, m in enumerate(methods):
        ax.bar([j + i * width for j in range(len(names))], [bits_of(bits_by_method[m], n) for n in names],
               width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], [_short(n) for n in names], rotation=70,
                  fontsize=7)
    ax.set_ylabel("bits")
    ax.set_title("precision per weight group")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_size_ppl(rows: list[dict], path, key: str = "valid_ppl"):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        if r.get(key) is None:
            continue
        ax.scatter(r["size_mb"], r[key], s=18)
        ax.annotate(r["name"], (r["size_mb"], r[key]), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("model size (MB, packed file)")
    ax.set_ylabel(key.replace("_", " "))
    ax.set_title("size vs perplexity")
    _save(fig, path)
