"""PNG plots (matplotlib, Agg): Hessian traces and KL sensitivities per group, chosen bits per group, size vs
perplexity."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asr_lm_quant.atomic import atomic_path  # noqa: E402
from asr_lm_quant.plotstyle import bit_ticks, short_group as _short, system_styles  # noqa: E402
from asr_lm_quant.quant.plan import split_group  # noqa: E402


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
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=8)
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
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_ylabel("KL divergence, nats per token")
    ax.set_title("KL(full precision || the group alone at b bits), per weight group", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    _save(fig, path)


def bits_figure(bits_by_method: dict[str, dict[str, int]]):
    """A table of bits per weight group (columns) and system (rows), each cell coloured by its bit width and
    showing it; systems may group differently (row bands, deeper models): every group name any of them has
    gets a column, a band taking its whole matrix's bits where a system did not split it, a group a system
    does not have (a layer of a deeper model) left blank."""
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap
    methods = list(bits_by_method)
    names = list(dict.fromkeys(n for b in bits_by_method.values() for n in b))

    def bits_of(bits, name):
        b = bits[name] if name in bits else bits.get(split_group(name)[0])
        return float(b) if b else np.nan

    grid = np.array([[bits_of(bits_by_method[m], n) for n in names] for m in methods])
    widths = sorted({int(v) for v in grid.flat if v == v})
    # One colour per bit width that occurs, light to dark with the width.
    cmap = ListedColormap(plt.get_cmap("viridis_r")(np.linspace(0.1, 0.9, len(widths))))
    edges = [widths[0] - 0.5] + [(a + b) / 2 for a, b in zip(widths, widths[1:])] + [widths[-1] + 0.5]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(names) + 2.5), max(2.5, 0.36 * len(methods) + 1.8)))
    img = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=BoundaryNorm(edges, cmap.N), aspect="auto")
    for i in range(len(methods)):
        for j in range(len(names)):
            if grid[i, j] == grid[i, j]:
                ax.text(j, i, f"{int(grid[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if widths.index(int(grid[i, j])) >= len(widths) / 2 else "black")
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=8)
    bar = fig.colorbar(img, ax=ax, ticks=widths, fraction=0.03, pad=0.01)
    bar.set_label("bits per weight")
    bit_ticks(bar.ax, widths)
    ax.set_title("bits per weight group (blank: the system has no such group)", fontsize=10)
    return fig


def plot_bits(bits_by_method: dict[str, dict[str, int]], path):
    _save(bits_figure(bits_by_method), path)


def size_ppl_figure(rows: list[dict], key: str = "valid_ppl"):
    """Packed size against perplexity: hollow markers, a colour and shape per system, named in a legend beside
    the axes (no labels on the points to collide)."""
    rows = [r for r in rows if r.get(key) is not None]
    styles = system_styles(r["name"] for r in rows)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        st = styles[r["name"]]
        ax.scatter(r["size_mb"], r[key], marker=st["marker"], facecolors="none", edgecolors=st["color"],
                   linewidths=1.5, s=55, label=r["name"], zorder=3)
    ax.set_xscale("log")
    sizes = [r["size_mb"] for r in rows]
    if sizes:
        ticks = [m * 10.0 ** e for e in range(-3, 5) for m in (1, 2, 5)]
        inside = [t for t in ticks if min(sizes) / 1.5 <= t <= max(sizes) * 1.5]
        ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
        ax.set_xticks(inside, [f"{t:g}" for t in inside])
        ax.set_xticks([], minor=True)
    ax.set_xlabel("model size (MB, packed file, log scale)")
    ax.set_ylabel(key.replace("_ppl", " perplexity").replace("_", " "))
    ax.set_title("size vs perplexity")
    ax.grid(alpha=0.3)
    ncol = 1 if len(rows) <= 16 else 2
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, ncol=ncol)
    return fig


def plot_size_ppl(rows: list[dict], path, key: str = "valid_ppl"):
    _save(size_ppl_figure(rows, key), path)
