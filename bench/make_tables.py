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
the load of each run live beside the JSON (``bench/results/README.md``); a table whose JSON does not record them
(:data:`NOTED`) ends its caption with its run's row from there.
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
    "eval2000_projection_pruning": _from_script("bench_eval2000_projection"),
    "nn_scoring_edits_1thread": _from_script("bench_nn_scoring"),
    "nn_scoring_lattice_1thread": _from_script("bench_nn_scoring"),
    "nn_scoring_selfnorm_blocks_1thread": _from_script("bench_nn_scoring"),
    "train_output_loss": _from_script("bench_train"),
    "train_throughput": _from_script("bench_train"),
    "train_throughput_1thread": _from_script("bench_train"),
    "packed_inference": _from_script("bench_packed_inference"),
    "pruned_lattice": _from_script("bench_pruned_lattice"),
    "self_norm_wt2_sample": self_norm,
    "quant_table_wt2/results": quant_table,
}
# Tables whose JSON does not record the date and the load: their caption ends with the run's line of the notes.
NOTED = {"packed_inference", "pruned_lattice"}


def run_note(results: Path, stem: str) -> str:
    """``Run: <date>; <machine and load>.`` from the row of ``<stem>.json`` in bench/results/README.md."""
    notes = results / "README.md"
    try:
        rows = [line.split("|")[1:-1] for line in notes.read_text().splitlines() if line.startswith("| `")]
    except OSError as e:
        raise SystemExit(f"make_tables.py: error: {notes}: {e}")
    for cells in rows:
        if len(cells) == 4 and f"`{stem}.json`" in cells[0]:
            return f"Run: {cells[2].strip()}; {cells[3].strip()} (bench/results/README.md)."
    raise SystemExit(f"make_tables.py: error: {notes}: no row for `{stem}.json` (its date, machine and load)")


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
        try:
            tables[stem] = make(data)
        except (KeyError, TypeError, IndexError) as e:  # a JSON of another layout than its table code reads
            raise SystemExit(f"make_tables.py: error: {src}: not the layout its table is made from "
                             f"({type(e).__name__}: {e})")
        if stem in NOTED:  # the note joins the caption, the table's first paragraph
            head, sep, rest = tables[stem].partition("\n\n")
            tables[stem] = f"{head} {run_note(results, stem)}{sep}{rest}"
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
