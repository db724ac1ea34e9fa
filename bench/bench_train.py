"""Training throughput (tokens/s) of the LM configurations: fp32 and bf16 autocast, and the output layer's
loss fused and chunked (``lm.output_loss``, what training uses) or through the whole logits, side by side.

Runs the real training step (``lm.loop.lm_loss``, backward, clipping, the configured optimizer) on
batches shaped as each configuration's ``tokens_per_batch``, with sentence-length rows (default 32
tokens) of random word ids. The variants' steps alternate on the same model so that machine noise hits
them alike; medians and the ratios to fp32 through the logits are reported. Prints JSON (and writes it with
--json).

    .venv/bin/python bench/bench_train.py [--steps 5] [--threads 2] [--precisions fp32,bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(name, path, vocab_size, steps, row_len, precisions):
    from asr_lm_quant.lm.data import Batch
    import torch.nn.functional as F

    from asr_lm_quant.lm.loop import autocast, lm_loss
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.lm.optim import build_optimizer
    from asr_lm_quant.lm.options import load_train_config

    model_cfg, opts = load_train_config(path)
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=vocab_size, **model_cfg)).train()
    opt = build_optimizer(model, opts)
    T = min(row_len, opts.max_len)
    rows = max(1, opts.tokens_per_batch // T)
    variants = [(p, loss) for p in precisions for loss in ("fused", "logits")]
    times = {f"{p}_{loss}": [] for p, loss in variants}
    for i in range(steps + 1):
        for p, loss_kind in variants:
            ids = torch.randint(0, vocab_size, (rows, T + 1))
            batch = Batch(ids[:, :-1], ids[:, 1:], rows * T, rows * T)
            t = time.perf_counter()
            if loss_kind == "fused":
                loss, n = lm_loss(model, batch, "cpu", bf16=(p == "bf16"))
            else:
                with autocast("cpu", p == "bf16"):
                    logits = model(batch.inputs)
                loss = F.cross_entropy(logits.float().reshape(-1, vocab_size), batch.targets.reshape(-1),
                                       reduction="sum")
                n = batch.tokens
            opt.zero_grad(set_to_none=True)
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if i:  # the first step of each variant warms up allocators and kernels
                times[f"{p}_{loss_kind}"].append(time.perf_counter() - t)
    tokens = rows * T
    out = {"config": str(path.relative_to(REPO)), "vocab_size": vocab_size, "parameters": model.num_parameters(),
           "batch": [rows, T], "steps": steps}
    for mode, ts in times.items():
        med = statistics.median(ts)
        out[mode] = {"median_step_s": med, "tokens_per_s": tokens / med, "step_s": ts}
    ref = out[f"{precisions[0]}_logits"]["tokens_per_s"]
    out["speed_vs_" + f"{precisions[0]}_logits"] = {m: out[m]["tokens_per_s"] / ref for m in times}
    print(f"{name}: " + ", ".join(f"{m} {out[m]['tokens_per_s']:.0f} tok/s" for m in times), file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--row-len", type=int, default=32, help="tokens per row (a typical sentence)")
    ap.add_argument("--configs", default="mini,swbd", help=f"comma-separated, from {sorted(CONFIGS)}")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (bf16 is emulated and slow on "
                                                               "CPUs without AVX512-BF16 or AMX)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    result = {"threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
              "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags, "results": {}}
    for name in args.configs.split(","):
        path, vocab_size = CONFIGS[name]
        result["results"][name] = measure(name, path, vocab_size, args.steps, args.row_len,
                                          args.precisions.split(","))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
