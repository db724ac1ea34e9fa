#!/usr/bin/env python3
"""int8 matrix products for the output layer's normaliser: are they worth it on this CPU?

The product is the NN scorer's output chunk: ``[rows, 512] x [512, 30000]`` (the Switchboard configuration),
then the log-sum-exp over the 30000 logits. Compared, one thread, CPU time (median of repeats):
- ``fp32``: ``torch.mm`` in float32 (the scorer's float path);
- ``bf16``: ``torch.mm`` in bfloat16 (the scorer's bf16 path);
- ``int8_int_mm``: ``torch._int_mm``, int8 x int8 -> int32, activations quantized per row on the fly and weights
  per row, the result rescaled to float32 (quantizing the activations is included in the time);
- ``int8_weight_pack``: ``torch._weight_int8pack_mm``, float activations x int8 weights with per-row scales.
Reported with each: the largest error of the log normaliser against float64 (nats), and the CPU's flags.

    .venv/bin/python bench/bench_int8_output.py [--rows 544] [--repeats 5] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    except OSError:
        pass
    return []


def timed(fn, repeats):
    fn()  # warm-up (oneDNN primitive creation, packing)
    times = []
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return sorted(times)[len(times) // 2], out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=544, help="rows per chunk (the scorer's float32 chunk: 544)")
    ap.add_argument("--vocab", type=int, default=30000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, V, D = args.rows, args.vocab, args.dim
    x = torch.randn(n, D) * 1.0
    W = (torch.rand(V, D) - 0.5) * 0.2
    bias = torch.randn(V)
    ref = torch.logsumexp((x.double() @ W.double().t()) + bias.double(), dim=-1)

    w_scale = W.abs().amax(dim=1) / 127
    w8 = torch.round(W / w_scale[:, None]).clamp(-127, 127).to(torch.int8)
    w8_t = w8.t().contiguous()  # [D, V] for _int_mm
    xb, Wb = x.to(torch.bfloat16), W.to(torch.bfloat16)

    def fp32():
        return torch.logsumexp(torch.addmm(bias, x, W.t()), dim=-1)

    def bf16():
        return torch.logsumexp(torch.mm(xb, Wb.t()).float() + bias, dim=-1)

    def int_mm():
        x_scale = x.abs().amax(dim=1) / 127
        x8 = torch.round(x / x_scale[:, None]).clamp(-127, 127).to(torch.int8)
        acc = torch._int_mm(x8, w8_t)
        return torch.logsumexp(acc.float() * x_scale[:, None] * w_scale + bias, dim=-1)

    def weight_pack():
        return torch.logsumexp(torch._weight_int8pack_mm(x, w8, w_scale) + bias, dim=-1)

    rows = {}
    for name, fn in (("fp32", fp32), ("bf16", bf16), ("int8_int_mm", int_mm), ("int8_weight_pack", weight_pack)):
        try:
            sec, out = timed(fn, args.repeats)
        except (RuntimeError, NotImplementedError) as e:
            rows[name] = {"error": str(e).splitlines()[0]}
            continue
        rows[name] = {"cpu_seconds": sec, "gmac_per_s": n * V * D / sec / 1e9,
                      "max_abs_log_z_error": float((out.double() - ref).abs().max())}
    for r in rows.values():
        if "cpu_seconds" in r:
            r["speed_vs_fp32"] = rows["fp32"]["cpu_seconds"] / r["cpu_seconds"]
    result = {"shape": {"rows": n, "dim": D, "vocab": V}, "threads": 1, "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_flags": cpu_flags(), "results": rows}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
