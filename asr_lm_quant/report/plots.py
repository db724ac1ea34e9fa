"""PNG plots of the results (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_bits_per_layer(systems: list[dict], path) -> bool:
    """Bars of the bits given to each weight group, one panel per mixed-precision system."""
    from asr_lm_quant.quant.methods import mixed_methods
    rows = [s for s in systems if isinstance(s.get("plan_bits"), dict) and s.get("method") in mixed_methods()]
    if not rows:
        return False
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.6 * len(rows)), squeeze=False)
    for ax, s in zip(axes[:, 0], rows):
        names = list(s["plan_bits"])
        ax.bar(range(len(names)), [s["plan_bits"][n] for n in names], color="tab:blue")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=90, fontsize=6)
        ax.set_ylabel("bits")
        ax.set_title(f"{s['name']} (average {s.get('avg_bits', 0):.2f} bits)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_wer_vs_weight(systems: list[dict], path) -> bool:
    """Dev-half WER (best LMWT/penalty) against the NN LM interpolation weight, per system and method."""
    curves = [(s["name"], m, s[f"{m}_tuning"]["dev_wer_by_weight"]) for s in systems
              for m in ("nbest", "lattice") if f"{m}_tuning" in s]
    if not curves:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, method in zip(axes, ("nbest", "lattice")):
        for name, m, by_w in curves:
            if m != method:
                continue
            ws = sorted(by_w, key=float)
            ax.plot([float(w) for w in ws], [by_w[w] for w in ws], marker="o", label=name)
        ax.set_xlabel("NN LM weight w")
        ax.set_title(f"{'N-best' if method == 'nbest' else 'lattice'} rescoring (dev half)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("dev WER (%), best LMWT and penalty")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_size_tradeoff(systems: list[dict], first_pass_wer, path) -> bool:
    """Model size against eval WER (N-best rescoring) and against test perplexity."""
    rows = [s for s in systems if s.get("size_mb")]
    if not rows:
        return False
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for s in rows:
        c = "tab:orange" if s.get("model") == "deep" else "tab:blue"
        if s.get("wer_nbest") is not None:
            a1.scatter(s["size_mb"], s["wer_nbest"], color=c)
            a1.annotate(s["name"], (s["size_mb"], s["wer_nbest"]), fontsize=6)
        if s.get("test_ppl") is not None:
            a2.scatter(s["size_mb"], s["test_ppl"], color=c)
            a2.annotate(s["name"], (s["size_mb"], s["test_ppl"]), fontsize=6)
    if first_pass_wer is not None:
        a1.axhline(first_pass_wer, color="gray", linestyle=":", label="first pass (3-gram)")
        a1.legend(fontsize=7)
    from matplotlib.ticker import FuncFormatter, NullFormatter
    for ax, y in ((a1, "eval WER, N-best rescoring (%)"), (a2, "test perplexity")):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("model size (MB)")
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    a1.set_title("size vs WER (blue: base, orange: deep)")
    a2.set_title("size vs perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
