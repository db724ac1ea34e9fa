"""One look for every plot of systems: a colour and marker per system, bit widths as ticks, short group names.

Plots of many systems are read from their legend, so no two systems may share a colour *and* a marker: system i
takes colour i % 13 and marker i % 15, a pair no other system has up to 195 systems.
"""

from __future__ import annotations

import re

# matplotlib's tab10, then three dark ones that stay apart from it: a recipe's dozen systems all differ in colour.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#000000", "#393b79", "#8c6d31")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "H", "8")


def system_styles(names) -> dict[str, dict]:
    """``{name: {"color": ..., "marker": ...}}`` in the order given (repeated names once)."""
    names = list(dict.fromkeys(names))
    return {n: {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)]} for i, n in enumerate(names)}


def short_group(name: str) -> str:
    """A weight group's name as a tick label: ``layers.0.attn.in_proj.weight`` -> ``L0 attn in``,
    ``embed.weight[39:118]`` -> ``embed 39:118``."""
    s = name.replace(".weight", "")
    s = re.sub(r"^layers\.(\d+)\.", r"L\1 ", s)
    s = s.replace("attn.in_proj", "attn in").replace("attn.out_proj", "attn out").replace("ff.fc", "ff")
    s = re.sub(r"\[(\d+):(\d+)\]", r" \1:\2", s)
    return s.replace(".", " ")


def bit_ticks(ax, values, axis: str = "y") -> None:
    """Ticks at the bit widths that occur (1, 2, 3, 4, 8, 16 ...), labelled as such, instead of 0/5/10."""
    ticks = sorted({int(v) for v in values if v})
    (ax.set_yticks if axis == "y" else ax.set_xticks)(ticks, [str(t) for t in ticks])
