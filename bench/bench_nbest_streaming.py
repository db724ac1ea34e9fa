#!/usr/bin/env python3
"""``rescore-nbest`` streams: its peak memory does not grow with the number of hypotheses.

Writes n-best files of 50k and 500k hypotheses (10-best lists of 4-12 words from a 200-word vocabulary) and
rescores each with a tiny Transformer (1 layer, d_model 16) and a 3-gram, two interpolation weights, writing
both rescored n-best lists, each run in its own process so that ``ru_maxrss`` is that run's peak. The tiny model
keeps the NN time small: what is measured is the reading, chunking and writing around it. Reported: peak RSS
and wall time of each size, and their ratios (10x the hypotheses should cost ~1x the memory and ~10x the time).
Prints JSON (and writes it with --out).

    .venv/bin/python bench/bench_nbest_streaming.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [f"w{i}" for i in range(200)]


def write_nbest(path: Path, hyps: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("utterance\trank\ttext\tacoustic_cost\tlm_cost\n")
        for u in range(hyps // 10):
            base = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
            for r in range(1, 11):
                words = list(base)
                words[rng.randrange(len(words))] = rng.choice(WORDS)
                f.write(f"utt{u:07d}\t{r}\t{' '.join(words)}\t{rng.uniform(100, 900):.3f}\t"
                        f"{rng.uniform(10, 90):.3f}\n")


def setup(root: Path) -> dict:
    import torch

    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.ngram import train_arpa
    from asr_lm_quant.text.vocab import Vocabulary

    vocab = Vocabulary(["<s>", "<unk>"] + WORDS)
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                   dropout=0.0)).eval()
    save_lm(root / "lm", model, vocab)
    text = root / "text.txt"
    rng = random.Random(1)
    text.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(8)) + "\n" for _ in range(2000)))
    train_arpa(text, root / "old.arpa", order=3)
    return {"lm": root / "lm", "arpa": root / "old.arpa"}


def run_one(files: dict, nbest: Path, out_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "asr_lm_quant.cli", "rescore-nbest", "--old-lm", str(files["arpa"]),
           "--lm-dir", str(files["lm"]), "--nbest", str(nbest), "--weight", "0.5,0.8",
           "--out-nbest", str(out_dir / "rescored.{weight}.tsv"), "--overwrite"]
    # A fresh wrapper process per run, so that its children's ru_maxrss is this run's peak alone.
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "sys.stderr.write(r.stderr[-2000:] if r.returncode else ''); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(p.stderr)
    peak = int(p.stdout.split()[-1])
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak / 1024, 1),
            "rows_out": sum(1 for _ in open(out_dir / "rescored.0.8.tsv")) - 1}


def machine() -> str:
    import os
    import platform
    model = ""
    try:
        model = next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5k and 50k hypotheses")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args()
    sizes = [5_000, 50_000] if a.quick else [50_000, 500_000]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = setup(root)
        runs = {}
        for n in sizes:
            nb = root / f"nbest_{n}.tsv"
            write_nbest(nb, n)
            out = root / f"out_{n}"
            out.mkdir()
            runs[n] = run_one(files, nb, out)
            runs[n]["hypotheses"] = n
            runs[n]["input_mb"] = round(nb.stat().st_size / 1e6, 1)
    small, big = (runs[n] for n in sizes)
    result = {"benchmark": "rescore-nbest streaming", "machine": machine(), "runs": list(runs.values()),
              "peak_rss_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
              "wall_ratio": round(big["wall_s"] / small["wall_s"], 2),
              "hypotheses_ratio": sizes[1] / sizes[0]}
    print(json.dumps(result, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
