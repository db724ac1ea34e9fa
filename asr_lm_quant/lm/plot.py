"""Training curves (train loss and validation perplexity against steps) from ``log/train.jsonl``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from asr_lm_quant.atomic import atomic_path


def plot_training_log(log_path, png_path) -> bool:
    """Write a PNG of the curves; returns False (and writes nothing) when the log has no train records."""
    recs = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    train = [(r["step"], math.exp(min(r["loss"], 50))) for r in recs if r.get("event") == "train"]
    valid = [(r["step"], r["ppl"]) for r in recs if r.get("event") == "valid"]
    if not train:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*sorted(dict(train).items())), label="train (window average)")
    if valid:
        ax.plot(*zip(*sorted(dict(valid).items())), "o-", label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("perplexity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True
