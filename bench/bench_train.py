"""Training throughput (tokens/s) of the LM configurations, fp32 and bf16 autocast side by side.

Runs the real training step (``lm.loop.lm_loss``, backward, clipping, the configured optimizer) on
batches shaped as each configuration's ``tokens_per_batch``, with sentence-length rows (default 32
tokens) of random word ids. fp32 and bf16 steps alternate on the same model so that machine noise hits
both alike; medians and the bf16/fp32 ratio are reported. Prints JSON (and writes it with --json).

    .venv/bin/python bench/bench_train.py [--steps 5] [--threads 2] [--json bench_train.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (configuration file, vocabulary size it is used with)
    "mini": (REPO / "recipes/mini/conf/lm.json", 10000),
    "mini_deep": (REPO / "recipes/mini/conf/lm_deep.json", 10000),
    "swbd": (REPO / "recipes/swbd/conf/lm_swbd.json", 30000),
}


def measure(name, path, vocab_size, steps, row_len):
    from asr_lm_quant.lm.data import Batch
    from asr_lm_quant.lm.loop import lm_loss
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.lm.optim import build_optimizer
    from asr_lm_quant.lm.options import load_train_config

    model_cfg, opts = load_train_config(path)
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=vocab_size, **model_cfg)).train()
    opt = build_optimizer(model, opts)
    T = min(row_len, opts.max_len)
    rows = max(1, opts.tokens_per_batch // T)
    times = {"fp32": [], "bf16": []}
    for i in range(steps + 1):
        for mode in ("fp32", "bf16"):
            ids = torch.randint(0, vocab_size, (rows, T + 1))
            batch = Batch(ids[:, :-1], ids[:, 1:], rows * T, rows * T)
            t = time.perf_counter()
            loss, n = lm_loss(model, batch, "cpu", bf16=(mode == "bf16"))
            opt.zero_grad(set_to_none=True)
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if i:  # the first step of each mode warms up allocators and kernels
                times[mode].append(time.perf_counter() - t)
    tokens = rows * T
    out = {"config": str(path.relative_to(REPO)), "vocab_size": vocab_size, "parameters": model.num_parameters(),
           "batch": [rows, T], "steps": steps}
    for mode, ts in times.items():
        med = statistics.median(ts)
        out[mode] = {"median_step_s": med, "tokens_per_s": tokens / med, "step_s": ts}
    out["bf16_speedup"] = out["bf16"]["tokens_per_s"] / out["fp32"]["tokens_per_s"]
    print(f"{name}: fp32 {out['fp32']['tokens_per_s']:.0f} tok/s, bf16 {out['bf16']['tokens_per_s']:.0f} tok/s "
          f"(x{out['bf16_speedup']:.2f})", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--row-len", type=int, default=32, help="tokens per row (a typical sentence)")
    ap.add_argument("--configs", default="mini,swbd", help=f"comma-separated, from {sorted(CONFIGS)}")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "results": {}}
    for name in args.configs.split(","):
        path, vocab_size = CONFIGS[name]
        result["results"][name] = measure(name, path, vocab_size, args.steps, args.row_len)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
