"""Quantization benchmarks (JSON on stdout): a Hutchinson trace sample, training step time of plain, STE,
STE distilled from the full-precision model, and ADMM training (ratios to plain), and time / peak memory of
loading a packed model.

Random weights and random token batches of the mini shape by default (the timings do not depend on the
values); ``--shape swbd`` uses the Switchboard configuration for the loading figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import torch

from asr_lm_quant.lm.data import Batch
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.hessian import hvp_sample
from asr_lm_quant.quant.packed import save_packed
from asr_lm_quant.quant.plan import QuantPlan, weight_groups
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.quant.options import AdmmOptions, FinetuneOptions
from asr_lm_quant.quant.train import admm_train, ste_train, run_steps, token_loss
from asr_lm_quant.text.vocab import Vocabulary

SHAPES = {"mini": dict(vocab_size=10000, d_model=128, n_layers=2, n_heads=4, d_ff=512),
          "swbd": dict(vocab_size=30000, d_model=512, n_layers=6, n_heads=8, d_ff=512)}


class FakePlan:
    """A BatchPlan stand-in: the same random batch list every epoch."""

    def __init__(self, batches):
        self.batches = batches

    def iterate(self, epoch, start=0, rank=0, world_size=1):
        yield from enumerate(self.batches)


def random_batches(vocab, n, rows, T, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randint(0, vocab, (rows, T + 1), generator=g)
        out.append(Batch(x[:, :-1], x[:, 1:], rows * T, rows * T))
    return out


def step_times(kind, cfg, batches, steps):
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(**cfg, dropout=0.1))
    opts = FinetuneOptions(steps=steps, log_every=1, warmup=1)
    plan = QuantPlan.uniform(model, 2)
    times = []
    t = [time.perf_counter()]

    def tick(_step):
        now = time.perf_counter()
        times.append(now - t[0])
        t[0] = now

    if kind == "plain":
        run_steps(model, model.parameters(), FakePlan(batches), opts,
                  lambda b: (lambda l: (l, l.detach()))(token_loss(model(b.inputs), b.targets)), tick)
    elif kind in ("ste", "ste_distill"):
        import asr_lm_quant.quant.train as tr
        orig = tr.run_steps
        tr.run_steps = lambda *a, **k: orig(*a, **{**k, "after_step": tick})
        teacher = copy.deepcopy(model).eval() if kind == "ste_distill" else None
        try:
            ste_train(model, plan, FakePlan(batches), replace(opts, distill=0.5), teacher)
        finally:
            tr.run_steps = orig
    else:
        import asr_lm_quant.quant.train as tr
        orig = tr.run_steps

        def wrapped(model_, params, train, o, loss_fn, after_step=None, **k):
            def both(step):
                after_step(step)
                tick(step)
            return orig(model_, params, train, o, loss_fn, both, **k)
        tr.run_steps = wrapped
        try:
            admm_train(model, plan, FakePlan(batches), opts, AdmmOptions(project_every=5))
        finally:
            tr.run_steps = orig
    return statistics.median(times[1:])


def load_child(path):
    code = ("import resource,time,sys;t=time.perf_counter();"
            "from asr_lm_quant.quant.packed import load_packed;"
            "i=time.perf_counter();load_packed(sys.argv[1]);"
            "print(time.perf_counter()-i, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout
    s, rss = out.split()
    return float(s), int(rss) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mini")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SHAPES["mini"]
    batches = random_batches(cfg["vocab_size"], 4, 16, 64)
    res = {"shape_train": "mini", "threads": args.threads, "tokens_per_step": 16 * 64}
    torch.manual_seed(0)
    m = TransformerLM(LMConfig(**cfg, dropout=0.0))
    gen = torch.Generator().manual_seed(0)
    ts = []
    for b in batches[:3]:
        t = time.perf_counter()
        hvp_sample(m, weight_groups(m), b.inputs, b.targets, gen)
        ts.append(time.perf_counter() - t)
    res["hutchinson_sample_s"] = statistics.median(ts)
    for kind in ("plain", "ste", "ste_distill", "admm"):
        res[f"step_s_{kind}"] = step_times(kind, cfg, batches, args.steps)
    for kind in ("ste", "ste_distill", "admm"):
        res[f"step_ratio_{kind}"] = res[f"step_s_{kind}"] / res["step_s_plain"]
    scfg = SHAPES[args.shape]
    torch.manual_seed(0)
    big = TransformerLM(LMConfig(**scfg, dropout=0.0))
    with tempfile.TemporaryDirectory() as d:
        plan = quantize_model(big, QuantPlan.uniform(big, 2))
        vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(scfg["vocab_size"] - 2)])
        save_packed(d, big, plan, vocab)
        loads = [load_child(d) for _ in range(3)]
    res["load_shape"] = args.shape
    res["load_packed_s"] = statistics.median(x[0] for x in loads)
    res["load_peak_rss_mb"] = statistics.median(x[1] for x in loads)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
