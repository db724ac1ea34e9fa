"""PNG plots of the results (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> None:
    from asr_lm_quant.atomic import atomic_path
    with atomic_path(Path(path)) as tmp:
        # "tight" keeps a legend placed beside the axes inside the picture.
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)


def _mixed(systems: list[dict]) -> list[dict]:
    from asr_lm_quant.quant.methods import mixed_methods
    return [s for s in systems if isinstance(s.get("plan_bits"), dict) and s.get("method") in mixed_methods()]


def bits_per_layer_figure(systems: list[dict]):
    """Bars of the bits given to each weight group, one panel per mixed-precision system, or None if none.

    The y ticks are the bit widths the plan uses and each bar carries its number, so a panel reads without a
    ruler; tick labels are short group names (``L0 attn in``, ``embed 39:118``)."""
    from asr_lm_quant.plotstyle import bit_ticks, short_group
    rows = _mixed(systems)
    if not rows:
        return None
    plt = _plt()
    widest = max(len(s["plan_bits"]) for s in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(8.0, 0.36 * widest + 1.5), 3.0 * len(rows)), squeeze=False)
    for ax, s in zip(axes[:, 0], rows):
        names = list(s["plan_bits"])
        bits = [s["plan_bits"][n] for n in names]
        bars = ax.bar(range(len(names)), bits, color="#1f77b4")
        ax.bar_label(bars, [str(b) for b in bits], fontsize=8, padding=1)
        ax.set_xticks(range(len(names)), [short_group(n) for n in names], rotation=60, ha="right",
                      rotation_mode="anchor", fontsize=8)
        bit_ticks(ax, bits)
        ax.set_ylim(0, max(bits) * 1.18)
        ax.set_ylabel("bits per weight")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(f"{s['name']}: bits per weight group (average {s.get('avg_bits', 0):.2f})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_bits_per_layer(systems: list[dict], path) -> bool:
    fig = bits_per_layer_figure(systems)
    if fig is None:
        return False
    _save(fig, path)
    return True


def _legend_beside(fig, axes) -> None:
    """One legend for the whole figure, right of the axes, where it covers no data."""
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   fontsize=8, frameon=False)


def wer_vs_weight_figure(systems: list[dict]):
    """Dev-half WER (at the best LMWT and insertion penalty) against the NN LM interpolation weight, one line per
    system in N-best and lattice rescoring; None if no system was tuned."""
    from asr_lm_quant.plotstyle import system_styles
    curves = [(s["name"], m, s[f"{m}_tuning"]["dev_wer_by_weight"]) for s in systems
              for m in ("nbest", "lattice") if f"{m}_tuning" in s]
    if not curves:
        return None
    styles = system_styles(name for name, _, _ in curves)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    weights = sorted({float(w) for _, _, by_w in curves for w in by_w})
    for ax, method in zip(axes, ("nbest", "lattice")):
        for name, m, by_w in curves:
            if m != method:
                continue
            ws = sorted(by_w, key=float)
            ax.plot([float(w) for w in ws], [by_w[w] for w in ws], label=name, linewidth=1.2, markersize=6,
                    **styles[name])
        ax.set_xticks(weights, [f"{w:g}" for w in weights])
        ax.set_xlabel("interpolation weight of the Transformer LM")
        ax.set_title(f"{'N-best' if method == 'nbest' else 'lattice'} rescoring")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("WER on the dev half (%)")
    fig.suptitle("Dev-half WER against the interpolation weight (each point at its best LM weight and insertion "
                 "penalty)", fontsize=10)
    fig.tight_layout()
    _legend_beside(fig, axes)
    return fig


def plot_wer_vs_weight(systems: list[dict], path) -> bool:
    fig = wer_vs_weight_figure(systems)
    if fig is None:
        return False
    _save(fig, path)
    return True


def _size_ticks(ax, sizes) -> None:
    """Log-axis ticks at 1-2-5 steps spanning the sizes, labelled plainly (0.5, 1, 2, 5, 10)."""
    lo, hi = min(sizes), max(sizes)
    ticks = [m * 10.0 ** e for e in range(-3, 5) for m in (1, 2, 5)]
    inside = [t for t in ticks if lo / 1.5 <= t <= hi * 1.5]
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ax.set_xticks(inside, [f"{t:g}" for t in inside])
    ax.set_xticks([], minor=True)


def size_tradeoff_figure(systems: list[dict], first_pass_wer):
    """Model size against eval WER (N-best and lattice rescoring) and against test perplexity; None if no
    system has a size. Hollow markers, a colour and shape per system, named in one legend: points that lie
    on each other (two 4-bit models of one size) stay visible and no label covers another."""
    from asr_lm_quant.plotstyle import system_styles
    rows = [s for s in systems if s.get("size_mb")]
    if not rows:
        return None
    styles = system_styles(s["name"] for s in rows)
    plt = _plt()
    panels = [("wer_nbest", "eval WER after N-best rescoring (%)", "N-best rescoring"),
              ("wer_lattice", "eval WER after lattice rescoring (%)", "lattice rescoring"),
              ("test_ppl", "test perplexity", "perplexity")]
    panels = [p for p in panels if any(s.get(p[0]) is not None for s in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    axes = axes[0]
    for ax, (key, ylabel, title) in zip(axes, panels):
        for s in rows:
            if s.get(key) is None:
                continue
            st = styles[s["name"]]
            ax.scatter(s["size_mb"], s[key], marker=st["marker"], facecolors="none", edgecolors=st["color"],
                       linewidths=1.6, s=70, label=s["name"], zorder=3)
        if key.startswith("wer") and first_pass_wer is not None:
            ax.axhline(first_pass_wer, color="gray", linestyle=":", label="first pass (3-gram)")
        ax.set_xscale("log")
        _size_ticks(ax, [s["size_mb"] for s in rows])
        ax.set_xlabel("model size (MB, log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _legend_beside(fig, axes)
    return fig


def plot_size_tradeoff(systems: list[dict], first_pass_wer, path) -> bool:
    fig = size_tradeoff_figure(systems, first_pass_wer)
    if fig is None:
        return False
    _save(fig, path)
    return True


def plot_first_pass_sweep(sweep: dict, path) -> bool:
    """First-pass WER against LMWT for each insertion penalty (whole test set)."""
    settings = sweep.get("settings") or []
    if not settings:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for wip in sorted({str(s["wip"]) for s in settings}, key=float):
        pts = sorted((float(s["lmwt"]), s["wer"]) for s in settings if str(s["wip"]) == wip)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"penalty {wip}")
    ax.set_xlabel("LM weight (LMWT)")
    ax.set_ylabel("WER (%)")
    ax.set_title("First pass (pocketsphinx + 3-gram lattices)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(res: dict, out_dir) -> list[str]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    systems = res["systems"]
    if plot_bits_per_layer(systems, out_dir / "bits_per_layer.png"):
        made.append("bits_per_layer.png")
    if plot_wer_vs_weight(systems, out_dir / "wer_vs_lm_weight.png"):
        made.append("wer_vs_lm_weight.png")
    if plot_size_tradeoff(systems, res["first_pass"].get("wer_first_pass"), out_dir / "size_vs_wer_ppl.png"):
        made.append("size_vs_wer_ppl.png")
    if res.get("first_pass_sweep") and plot_first_pass_sweep(res["first_pass_sweep"], out_dir / "first_pass_lmwt.png"):
        made.append("first_pass_lmwt.png")
    return made
