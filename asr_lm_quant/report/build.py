"""``build_report(exp, layout, out)``: exp/results.json, exp/results.md and exp/plots/*.png in one call."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.report.collect import collect
from asr_lm_quant.report.layout import Layout, load_layout
from asr_lm_quant.report.plots import write_plots
from asr_lm_quant.report.tables import results_markdown


def machine() -> str:
    import os
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def build_report(exp, layout, out=None, *, elapsed_s: float | None = None) -> dict:
    """``layout``: the recipe's :class:`~asr_lm_quant.report.layout.Layout`, or its JSON file."""
    exp = Path(exp)
    out = Path(out) if out else exp
    if not isinstance(layout, Layout):
        layout = load_layout(layout)
    res = collect(exp, layout)
    res["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    res["machine"] = machine()
    if elapsed_s is not None:
        res["elapsed_s"] = elapsed_s
    res["plots"] = [f"plots/{p}" for p in write_plots(res, out / "plots")]
    header = f"Results of {layout.title} ({res['date']}, {res['machine']}"
    header += f", {elapsed_s / 60:.0f} min)." if elapsed_s is not None else ")."
    md = results_markdown(res, layout, header=header)
    if res["plots"]:
        md += "\n" + "\n".join(f"![{p}]({p})" for p in res["plots"]) + "\n"
    with atomic_open(out / "results.json") as f:
        json.dump(res, f, indent=1)
    with atomic_open(out / "results.md") as f:
        f.write(md)
    return res
