#!/usr/bin/env python3
"""Benchmark tables from the JSON the benchmarks wrote, so no table is ever typed by hand.

    python bench/make_tables.py            # rewrite bench/results/*.md and the tables in docs/*.md
    python bench/make_tables.py --check    # exit 1, naming each stale file, if any differs from its JSON

For every ``bench/results/<stem>.json`` listed in :data:`TABLES` it writes ``bench/results/<stem>.md`` (a caption
naming the machine and the run, then the table), with the ``markdown()`` of the benchmark that made the JSON where
that script has one, else a formatter here. A docs page shows a table between the markers

    <!-- bench-table: <stem> -->
    ...
    <!-- /bench-table -->

and this script replaces what lies between them with ``bench/results/<stem>.md``. Dated notes on the machine and
the load of each run live beside the JSON (``bench/results/README.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"(<!-- bench-table: (?P<stem>[\w./-]+) -->\n)(?P<body>.*?)(<!-- /bench-table -->)", re.S)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _from_script(name: str):
    return lambda r: _script(name).markdown(r)


def train_output_loss(r: dict) -> str:
    names = {"mini": "mini (2 x 128, 10k words)", "mini_deep": "mini deep (6 x 128, 10k words)",
             "swbd": "Switchboard (6 x 512, 30k words)"}
    lines = [f"Training speed, the output layer fused with its loss against through the logits: {r['threads']} "
             f"threads, torch {r['torch']}, {r['cpu_count']} cores, avx512_bf16 {'yes' if r['avx512_bf16'] else 'no'}, "
             "median of each variant's steps (interleaved).", "",
             "| configuration | through the logits, tokens/s | fused, tokens/s | speed-up |", "|---|---|---|---|"]
    for key, res in r["results"].items():
        logits, fused = res["fp32_logits"]["tokens_per_s"], res["fp32_fused"]["tokens_per_s"]
        lines.append(f"| {names.get(key, key)} | {logits:,.0f} | {fused:,.0f} | {fused / logits:.2f}x |")
    return "\n".join(lines) + "\n"


PACKED_NAMES = {"fp32": "float32", "ptq8": "PTQ 8 bit", "ptq4": "PTQ 4 bit", "ptq2": "PTQ 2 bit"}


def packed_inference(r: dict) -> str:
    lines = [f"Packed models at rescoring time: {r['hypotheses']} hypotheses, {r['threads']} thread(s), each variant "
             f"in its own process; {r['machine']}.", "",
             "| model | file MB | resident MB over torch (x file) | x dir | load s | bf16 vs fp32 model's bf16 | "
             "fp32 vs fp32 model's fp32 | max cost diff (bf16 / fp32) |", "|---|---|---|---|---|---|---|---|"]
    variants = dict(r["variants"]) if isinstance(r["variants"], list) else r["variants"]
    base = variants.get("fp32", {})
    for name, v in variants.items():
        label = PACKED_NAMES.get(name, f"mixed, {v['avg_bits']:.1f} bits (bands)" if "avg_bits" in v else name)
        fp32_ratio = v["fp32"]["words_per_s"] / base["fp32"]["words_per_s"] if base else float("nan")
        diffs = [v[p].get("max_cost_diff") for p in ("bf16", "fp32")]
        diff = "-" if diffs[0] is None else f"{diffs[0]:.0e} / {diffs[1]:.0e}"
        lines.append(f"| {label} | {v['file_mb']:.1f} | {v['rss_mb']:.1f} ({v['rss_over_file']:.2f}x) | "
                     f"{v['rss_over_dir']:.2f}x | {v['load_s']:.2f} | {v['bf16_speed_vs_fp32_model_bf16']:.2f}x | "
                     f"{fp32_ratio:.2f}x | {diff} |")
    return "\n".join(lines) + "\n"


def self_norm(r: dict) -> str:
    lines = [f"Self-normalised training: {r['data']}; {r['config']}, {r['steps']} steps of {r['tokens_per_batch']:,} "
             f"tokens, {r['threads']} thread(s).", "",
             "| alpha | valid ppl, exact | ppl, shortcut (no normaliser) | mean log Z | mean abs log Z |",
             "|---|---|---|---|---|"]
    for alpha, a in r["alphas"].items():
        shortcut = f"{a['ppl_self_normalized']:.2f} (meaningless)" if abs(a["log_z_mean_abs"]) > 1 \
            else f"{a['ppl_self_normalized']:.1f}"
        lines.append(f"| {alpha} | {a['ppl_exact']:.1f} | {shortcut} | {a['log_z_mean']:.2f} | "
                     f"{a['log_z_mean_abs']:.2f} |")
    return "\n".join(lines) + "\n"


def quant_table(rows: list) -> str:
    from asr_lm_quant.quant.sweep import results_table
    return results_table(rows)


# stem of bench/results/<stem>.json -> the function that makes its table.
TABLES = {
    "nbest_from_lattices_1thread": _from_script("bench_nbest_from_lattices"),
    "eval2000_projection": _from_script("bench_eval2000_projection"),
    "eval2000_projection_quiet": _from_script("bench_eval2000_projection"),
    "nn_scoring_edits_1thread": _from_script("bench_nn_scoring"),
    "nn_scoring_lattice_1thread": _from_script("bench_nn_scoring"),
    "nn_scoring_selfnorm_blocks_1thread": _from_script("bench_nn_scoring"),
    "train_output_loss": train_output_loss,
    "packed_inference": packed_inference,
    "self_norm_wt2_sample": self_norm,
    "quant_table_wt2/results": quant_table,
}


def expected(results: Path, docs: Path) -> dict[Path, str]:
    """Every file this script owns (or the tables within it) -> its content as the JSON makes it."""
    tables = {}
    out = {}
    for stem, make in TABLES.items():
        src = results / f"{stem}.json"
        try:
            data = json.loads(src.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"make_tables.py: error: {src}: {e}")
        tables[stem] = make(data)
        out[results / f"{stem}.md"] = tables[stem]
    for page in sorted(docs.glob("*.md")):
        text = page.read_text()

        def fill(m):
            stem = m.group("stem")
            if stem not in tables:
                raise SystemExit(f"make_tables.py: error: {page}: no table '{stem}' (known: {', '.join(TABLES)})")
            return m.group(1) + tables[stem] + m.group(4)
        new = MARKER.sub(fill, text)
        if new != text or MARKER.search(text):
            out[page] = new
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs from its JSON")
    ap.add_argument("--results", default=str(REPO / "bench" / "results"), help="the benchmarks' JSON and tables")
    ap.add_argument("--docs", default=str(REPO / "docs"), help="pages whose bench-table markers are filled")
    a = ap.parse_args(argv)
    stale = []
    for path, text in expected(Path(a.results), Path(a.docs)).items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not a.check:
            path.write_text(text)
    for path in stale:
        print(f"make_tables.py: {'stale' if a.check else 'wrote'} {path}", file=sys.stderr)
    return 1 if a.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
