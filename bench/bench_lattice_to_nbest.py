#!/usr/bin/env python3
"""``lattice-to-nbest`` throughput on 500 decoder-shaped lattices (300 frames, 60 states, ~180 arcs each),
10-best: writing the one-path lattices (binary archive) against writing only the JSON-lines n-best file, and
the one-path lattices laid out by the array arithmetic meant for large lattices instead of the plain loop
used for small ones. Input arcs per second, median of three runs each. Prints JSON (and writes it with --out).

    .venv/bin/python bench/bench_lattice_to_nbest.py [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    from asr_lm_quant.cli import main as cli
    from asr_lm_quant.kaldi import fst_binary
    from asr_lm_quant.kaldi.archive import write_lattices
    from asr_lm_quant.kaldi.synthetic import random_compact_lattice

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    lats = [(f"u{i:04d}", random_compact_lattice(rng, num_frames=300, num_states=60, arcs_per_state=3.0,
                                                  vocab=2000)) for i in range(500)]
    arcs = sum(lat.num_arcs for _, lat in lats)
    res = {"benchmark": "lattice-to-nbest", "lattices": len(lats), "arcs": arcs, "n": 10}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_lattices(f"ark:{d}/in.ark", lats)
        (d / "words.txt").write_text("".join(f"w{i} {i}\n" for i in range(2001)))
        outputs = {"write_lattices": [f"ark:{d}/out.ark"],
                   "write_lattices_array_layout": [f"ark:{d}/out.ark"],
                   "jsonl_only": ["--words", str(d / "words.txt"), "--nbest", str(d / "out.jsonl")]}
        small = fst_binary._SMALL
        times = {name: [] for name in outputs}
        for _ in range(3):  # variants interleaved: a busy machine slows them alike
            for name, args in outputs.items():
                fst_binary._SMALL = -1 if name == "write_lattices_array_layout" else small
                t0 = time.perf_counter()
                with contextlib.redirect_stderr(io.StringIO()):
                    rc = cli(["lattice-to-nbest", "--n", "10", "--overwrite", f"ark:{d}/in.ark", *args])
                times[name].append(time.perf_counter() - t0)
                if rc:
                    raise SystemExit(f"lattice-to-nbest failed ({name})")
        fst_binary._SMALL = small
        for name, ts in times.items():
            res[name] = {"median_s": statistics.median(ts), "arcs_per_s": arcs / statistics.median(ts)}
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
