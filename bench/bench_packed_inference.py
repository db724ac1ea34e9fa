#!/usr/bin/env python3
"""Packed models at rescoring time: resident memory, load time and scoring speed, against the float32 model.

The Switchboard configuration (6 layers x 512, 8 heads, d_ff 2048, tied 30k-word embedding; random weights:
speed and memory do not depend on the values) is saved as a float32 model directory and quantized by PTQ to
8, 4 and 2 bits and to a mixed-precision plan (the embedding in 8 word-frequency bands at 4 down to 2 bits,
the layers at 2 and 3 bits: about 2.2 bits per weight, ~14x). Each variant runs in its own process, all on the same
n-best set, one thread:

- ``rss_mb``: resident memory after loading, over the same process after importing torch and the toolkit and
  running a tiny model once (torch's one-time costs); the vocabulary included (target: at most 1.25x the
  file). ``rss_over_file`` divides by the safetensors file alone, ``rss_over_dir`` by the whole model
  directory (with ``words.txt``, config and plan);
- ``load_s``: median load time (target: no longer than the float32 model's);
- ``words_per_s`` with ``bf16`` and ``fp32`` products (target: the packed models' bf16 at least the float32
  model's bf16), and ``max_cost_diff`` from the model they stand for (the dequantized one), on the first 200
  hypotheses.

    .venv/bin/python bench/bench_packed_inference.py [--quick] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ["fp32", "ptq8", "ptq4", "ptq2", "mixed16x"]


def build(root: Path, quick: bool) -> dict:
    import torch

    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.quant.packed import save_packed
    from asr_lm_quant.quant.plan import QuantPlan, group_names
    from asr_lm_quant.quant.ptq import quantize_model
    from asr_lm_quant.text.vocab import Vocabulary

    V = 5000 if quick else 30000
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(V - 2)])
    cfg = LMConfig(vocab_size=V, d_model=512, n_layers=2 if quick else 6, n_heads=8, d_ff=2048, dropout=0.0,
                   norm="post", tie_embeddings=True)
    torch.manual_seed(0)
    base = TransformerLM(cfg).eval()
    for p in base.parameters():  # weights of a trained model's size
        torch.nn.init.normal_(p, 0, 0.05)
    dirs, avg = {"fp32": root / "fp32"}, {"fp32": 32.0}
    save_lm(dirs["fp32"], base, vocab)
    for name, bits in (("ptq8", 8), ("ptq4", 4), ("ptq2", 2), ("mixed16x", None)):
        m = TransformerLM(cfg).eval()
        m.load_state_dict(base.state_dict())
        if bits:
            plan = QuantPlan.uniform(m, bits)
        else:  # frequent words' bands get more bits, as the Hessian allocation gives them
            names = group_names(m, 8)
            emb = [n for n in names if n.startswith("embed.weight")]
            mix = dict(zip(emb, [4, 4, 3, 3, 3, 2, 2, 2]))
            mix.update({n: [3, 2, 2, 2][i % 4] for i, n in enumerate(x for x in names if x not in mix)})
            plan = QuantPlan.from_bits(mix)
        plan = quantize_model(m, plan)
        dirs[name] = root / name
        save_packed(dirs[name], m, plan, vocab)
        avg[name] = plan.size_report(m)["avg_bits"]
    return dirs, avg


def hypotheses(n: int, vocab_size: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n // 20):  # 20-best lists that differ in a few words
        base = [f"w{min(vocab_size - 3, int(rng.paretovariate(1.0)))}" for _ in range(rng.randint(6, 18))]
        for _ in range(20):
            h = list(base)
            for _ in range(rng.randint(1, 3)):
                h[rng.randrange(len(h))] = f"w{rng.randrange(vocab_size - 2)}"
            out.append(" ".join(h))
    return out


CHILD = r"""
import gc, json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from asr_lm_quant.quant.packed import load_lm_for_inference, load_any_lm
from asr_lm_quant.rescore.nnscore import NNScorer
def rss():  # MB (10^6 bytes, as file_mb)
    return int([x for x in open("/proc/self/status") if x.startswith("VmRSS")][0].split()[1]) * 1024 / 1e6
d, hyps_file, ref_file, loads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
hyps = [h.split() for h in open(hyps_file).read().splitlines()]
# Warm-up: torch's one-time costs of making and running a first model (kernels, tables; ~8 MB) count for no
# variant; what is left is the model's own.
from asr_lm_quant.lm.model import LMConfig, TransformerLM
w = TransformerLM(LMConfig(vocab_size=10, d_model=8, n_layers=1, n_heads=2, d_ff=8)).eval()
with torch.inference_mode():
    w(torch.zeros(1, 2, dtype=torch.long))
del w
gc.collect(); base = rss()
times = []
t0 = time.perf_counter(); model, vocab = load_lm_for_inference(d); times.append(time.perf_counter() - t0)
gc.collect(); after = rss()  # after the first load: freed earlier loads would stay in the heap
for _ in range(loads - 1):
    del model; gc.collect()
    t0 = time.perf_counter(); model, vocab = load_lm_for_inference(d); times.append(time.perf_counter() - t0)
res = {"rss_mb": after - base, "load_s": sorted(times)[len(times) // 2]}
words = sum(len(h) + 1 for h in hyps)
for bf16 in (True, False):
    s = NNScorer(model, vocab, bf16=bf16)
    s.costs(hyps[:40])  # warm-up
    t0 = time.process_time(); costs = s.costs(hyps); cpu = time.process_time() - t0
    res["bf16" if bf16 else "fp32"] = {"words_per_s": words / cpu, "cpu_s": cpu}
    np.save(ref_file + (".bf16" if bf16 else ".fp32") + ".npy", costs)
print(json.dumps(res))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 2-layer, 5k-word model and fewer hypotheses")
    ap.add_argument("--hypotheses", type=int, help="n-best set size (default 2000; --quick 400)")
    ap.add_argument("--work-dir", help="keep the built models here and reuse them on the next run")
    ap.add_argument("--out")
    a = ap.parse_args()
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if a.work_dir:  # models built once and kept (building the quantized ones takes minutes)
            root = Path(a.work_dir)
            root.mkdir(parents=True, exist_ok=True)
        built = root / "built.json"
        if built.exists():
            avg = json.loads(built.read_text())
            dirs = {n: root / n for n in VARIANTS}
        else:
            dirs, avg = build(root, a.quick)
            built.write_text(json.dumps(avg))
        V = 5000 if a.quick else 30000
        hyps = hypotheses(a.hypotheses or (400 if a.quick else 2000), V)
        hf = root / "hyps.txt"
        hf.write_text("\n".join(hyps) + "\n")
        rows = {}
        for name in VARIANTS:
            p = subprocess.run([sys.executable, "-c", CHILD, str(dirs[name]), str(hf), str(root / name), "3"],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if p.returncode:
                raise SystemExit(p.stderr)
            r = json.loads(p.stdout.splitlines()[-1])
            files = [f for f in dirs[name].iterdir() if f.suffix == ".safetensors"]
            r["file_mb"] = sum(f.stat().st_size for f in files) / 1e6
            r["rss_over_file"] = r["rss_mb"] / r["file_mb"]
            # The whole directory (with words.txt, config and plan): what a user copies to use the model.
            r["dir_mb"] = sum(f.stat().st_size for f in dirs[name].iterdir()) / 1e6
            r["rss_over_dir"] = r["rss_mb"] / r["dir_mb"]
            r["avg_bits"] = avg[name]
            rows[name] = r
        # The dequantized model of each packed one, for the cost differences.
        from asr_lm_quant.quant.packed import load_packed
        from asr_lm_quant.rescore.nnscore import NNScorer
        check = [h.split() for h in hyps[:200]]  # the first 200 hypotheses: the tests check the rest
        for name in VARIANTS[1:]:
            model, vocab, _ = load_packed(dirs[name])
            for mode in ("bf16", "fp32"):
                ref = NNScorer(model, vocab, bf16=mode == "bf16").costs(check)
                got = np.load(str(root / name) + f".{mode}.npy")[:len(check)]
                rows[name][mode]["max_cost_diff"] = float(np.abs(ref - got).max())
    fp = rows["fp32"]
    for name, r in rows.items():
        r["load_vs_fp32"] = r["load_s"] / fp["load_s"]
        r["bf16_speed_vs_fp32_model_bf16"] = r["bf16"]["words_per_s"] / fp["bf16"]["words_per_s"]
    out = {"benchmark": "packed inference", "quick": a.quick, "threads": 1, "hypotheses": len(hyps),
           "variants": rows,
           "median_bf16_speed_ratio_packed": statistics.median(
               rows[n]["bf16_speed_vs_fp32_model_bf16"] for n in VARIANTS[1:])}
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
