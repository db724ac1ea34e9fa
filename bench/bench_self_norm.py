#!/usr/bin/env python3
"""Self-normalised training: perplexity and log normaliser against the weight alpha of (log Z)^2.

A small Transformer (recipes/mini/conf/lm.json: 2 layers, 128 dims) is trained briefly for each alpha on
a sample of WikiText-2 (ASR-normalised, the 10k most frequent training words + <s>, <unk>; the first
``--train-lines`` training and ``--valid-lines`` validation sentences) with the same seed, steps and data.
Per alpha: the validation perplexity with exact normalisation, the perplexity of the self-normalised
shortcut (each cost minus the logit, no normaliser), and the mean and mean absolute log Z. Stages are
skipped when their output exists (re-running continues).

    .venv/bin/python bench/bench_self_norm.py --work exp/bench_self_norm [--alphas 0,0.1,0.5] [--out res.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="exp/bench_self_norm")
    ap.add_argument("--wikitext", default=str(REPO.parent / "shared/data/wikitext-2"))
    ap.add_argument("--config", default=str(REPO / "recipes/mini/conf/lm.json"))
    ap.add_argument("--alphas", default="0,0.1,0.5")
    ap.add_argument("--train-lines", type=int, default=8000)
    ap.add_argument("--valid-lines", type=int, default=600)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--tokens-per-batch", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from asr_lm_quant.lm.files import load_lm
    from asr_lm_quant.lm.ppl import perplexity
    from asr_lm_quant.lm.train import train
    from asr_lm_quant.text.plain import prepare_plain

    work = Path(args.work)
    text = work / "text"
    if not (text / "words.txt").exists():
        wt = Path(args.wikitext)
        prepare_plain(wt / "train.txt.xz", wt / "valid.txt.xz", wt / "test.txt.xz", text, max_size=10000,
                      normalize="asr")
    sample = {}
    for split, n in (("train", args.train_lines), ("valid", args.valid_lines)):
        sample[split] = work / f"{split}.{n}.txt"
        if not sample[split].exists():
            with open(text / f"{split}.txt", encoding="utf-8") as f:
                sample[split].write_text("".join(itertools.islice(f, n)), encoding="utf-8")
    rows = {}
    for alpha in [float(a) for a in args.alphas.split(",")]:
        out = work / f"alpha_{alpha:g}"
        t = time.perf_counter()
        res = train(args.config, sample["train"], sample["valid"], text / "words.txt", out,
                    overrides={"self_norm_alpha": alpha, "max_steps": args.steps, "max_epochs": 100,
                               "tokens_per_batch": args.tokens_per_batch, "eval_every": args.steps,
                               "warmup_steps": args.steps // 10})
        train_s = time.perf_counter() - t
        model, vocab = load_lm(out)
        exact = perplexity(model, vocab, sample["valid"], progress=False)
        short = perplexity(model, vocab, sample["valid"], progress=False, self_normalized=True)
        rows[f"{alpha:g}"] = {
            "ppl_exact": exact["ppl"], "ppl_self_normalized": short["ppl"],
            "log_z_mean": exact["log_z_mean"], "log_z_mean_abs": exact["log_z_mean_abs"],
            # the shortcut's cost per token differs from the exact one by log Z: its perplexity by exp(mean)
            "ppl_ratio_shortcut_to_exact": short["ppl"] / exact["ppl"],
            "train_seconds": train_s if res.get("done") else None, "steps": res.get("steps")}
        print(f"alpha {alpha:g}: {json.dumps(rows[f'{alpha:g}'])}", file=sys.stderr)
    base = rows.get("0")
    if base:
        for r in rows.values():
            r["ppl_exact_vs_alpha0"] = r["ppl_exact"] / base["ppl_exact"] - 1
    result = {"data": f"WikiText-2 sample (ASR-normalised, 10k vocabulary): first {args.train_lines} train and "
                      f"{args.valid_lines} valid sentences",
              "config": str(Path(args.config).relative_to(REPO)) if Path(args.config).is_relative_to(REPO)
              else args.config,
              "steps": args.steps, "tokens_per_batch": args.tokens_per_batch, "threads": args.threads,
              "vocab_size": len(vocab), "alphas": rows,
              "note": "ppl_self_normalized is exp(mean cost) with costs -logit (no normaliser); it equals "
                      "ppl_exact * exp(-log_z_mean)"}
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out:
        Path(args.out).write_text(text_out + "\n")
    assert all(math.isfinite(r["ppl_exact"]) for r in rows.values())


if __name__ == "__main__":
    main()
