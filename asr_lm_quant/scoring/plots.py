"""WER against LM weight, one line per word insertion penalty (PNG, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.atomic import atomic_path


def plot_sweep(summary: dict, path, *, title: str = "WER sweep", key: str = "wer"):
    """Plot ``summary["settings"]`` rows (``lmwt``, ``wip``, ``key``) and mark ``summary["best"]``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["settings"]
    wips = list(dict.fromkeys(r["wip"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for w in wips:
        pts = sorted((r["lmwt"], r[key]) for r in rows if r["wip"] == w and r[key] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"penalty {w}")
    best = summary.get("best")
    if best and best.get(key) is not None:
        ax.plot([best["lmwt"]], [best[key]], marker="*", ms=14, color="black", linestyle="none",
                label=f"best {best[key]:.2f}")
    ax.set_xlabel("LM weight (LMWT)")
    ax.set_ylabel("WER (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
