#!/usr/bin/env python3
"""NN LM scoring throughput (hypothesis words per second) and peak memory, N-best lists of 20, 100 and 1000.

The model has the Switchboard configuration (6 layers, d_model 512, 8 heads, d_ff 512, post-norm, tied
embeddings, vocabulary ~30k) with random weights: throughput does not depend on the values. Utterances
have 5-30 words; ``--shape`` picks how their N-best lists are made (both differ from a base sentence in a
few words, so hypotheses share prefixes; the baseline's work depends only on the lengths):
- ``lattice`` (default): the N cheapest paths of a confusion network, as from a lattice: alternatives at
  a third of the positions recur across hypotheses, in combinations.
- ``edits``: each hypothesis has 1-3 random edits of its own (the least sharing a list shows).

Variants, each in its own process (so ``ru_maxrss`` is its own peak), on the same data:
- ``naive``: each utterance's N-best as one padded fp32 batch with a full log-softmax, no sharing (how
  Kaldi's ``compute_sentence_scores.py`` scores).
- ``bucket_fp32`` / ``bucket_bf16``: NNScorer without prefix sharing (length-sorted rows, token budget).
- ``trie_fp32`` / ``trie_bf16``: NNScorer with packed prefix tries, fp32 (the default of ``rescore-nbest``) or bf16 (``--bf16``).
- Options after ``+`` (``--variants trie_fp32,trie_fp32+selfnorm``): ``selfnorm`` skips the normaliser (the
  scored words' output rows only), ``dense_attention`` attends over whole rows (no query blocks).
Reported: median wall and CPU seconds over repeats, words/s, ratios to ``naive`` (wall and CPU time:
on a shared machine the CPU-time ratio is the steadier one with one thread), peak RSS growth over the
loaded model, and the largest cost difference from ``naive``. Prints JSON (and writes it with --out).

    .venv/bin/python bench/bench_nn_scoring.py [--quick] [--threads 1] [--shape edits] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

VARIANTS = ["naive", "bucket_fp32", "bucket_bf16", "trie_fp32", "trie_bf16"]


def _word(rng, vocab_size):
    """A Zipf-like word: frequent words much more likely."""
    return f"w{min(vocab_size - 1, 2 + int(rng.paretovariate(1.0)) - 1)}"


def make_nbest(rng: random.Random, vocab_size: int, n: int, min_len=5, max_len=30):
    """One utterance, ``edits`` shape: ``n`` distinct hypotheses, each the base sentence with 1-3 word edits
    of its own (random positions, random words). Edits are not shared between hypotheses, so prefixes
    are shared only up to each hypothesis' first edit: the least sharing an N-best list shows."""
    base = [_word(rng, vocab_size) for _ in range(rng.randint(min_len, max_len))]
    seen, out = {tuple(base)}, [base]
    tries = 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        h = list(base)
        for _ in range(1 + min(2, int(rng.expovariate(1.5)))):
            op, pos = rng.random(), rng.randrange(len(h) + 1)
            if op < 0.7 and pos < len(h):
                h[pos] = _word(rng, vocab_size)
            elif op < 0.85 and pos < len(h) and len(h) > 1:
                del h[pos]
            else:
                h.insert(pos, _word(rng, vocab_size))
        if tuple(h) not in seen:
            seen.add(tuple(h))
            out.append(h)
    return out


def make_nbest_lattice(rng: random.Random, vocab_size: int, n: int, min_len=5, max_len=30):
    """One utterance, ``lattice`` shape: the ``n`` cheapest paths through a confusion network, as an N-best
    list from a lattice is. About one word in three is confusable with 1-3 alternatives (a substitution,
    a deletion or an insertion), each costing an exponential amount more than the best word; a hypothesis
    is one choice per position, its cost the sum. Alternatives recur across hypotheses, at any position."""
    base = [_word(rng, vocab_size) for _ in range(rng.randint(min_len, max_len))]
    slots = [[(0.0, [w])] for w in base]  # per position: [(extra cost, words)], the base word first

    def add_alternative(i):
        alts = slots[i]
        while True:  # distinct from the position's other choices
            op, w = rng.random(), base[i]
            if op < 0.7:
                words = [_word(rng, vocab_size)]
            elif op < 0.85:
                words = []
            else:
                words = [w, _word(rng, vocab_size)] if rng.random() < 0.5 else [_word(rng, vocab_size), w]
            if all(words != a[1] for a in alts):
                break
        alts.append((rng.expovariate(1.0), words))
        alts[1:] = sorted(alts[1:])

    for i in range(len(base)):
        if rng.random() < 1 / 3:
            for _ in range(rng.randint(1, 3)):
                add_alternative(i)
    while True:
        out = _cheapest_paths(slots, n)
        if len(out) == n:
            return out
        add_alternative(rng.randrange(len(base)))  # short sentences: more confusions until n paths exist


def _cheapest_paths(slots, n):
    """The ``n`` cheapest distinct word sequences, one choice per position, best first."""
    import heapq
    start = (0,) * len(slots)
    heap, seen_choice, seen, out = [(0.0, start)], {start}, set(), []
    while heap and len(out) < n:
        cost, choice = heapq.heappop(heap)
        words = [w for alts, c in zip(slots, choice) for w in alts[c][1]]
        if tuple(words) not in seen:
            seen.add(tuple(words))
            out.append(words)
        for i, c in enumerate(choice):  # successors: one position moves to its next alternative
            if c + 1 < len(slots[i]):
                nxt = choice[:i] + (c + 1,) + choice[i + 1:]
                if nxt not in seen_choice:
                    seen_choice.add(nxt)
                    heapq.heappush(heap, (cost - slots[i][c][0] + slots[i][c + 1][0], nxt))
    return out


SHAPES = {"edits": make_nbest, "lattice": make_nbest_lattice}


def build_model(vocab_size):
    import torch
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.text.vocab import Vocabulary
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=vocab_size, d_model=512, n_layers=6, n_heads=8, d_ff=512, norm="post",
                   dropout=0.0, tie_embeddings=True)
    model = TransformerLM(cfg).eval()
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(2, vocab_size)])
    return model, vocab


def worker(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    from asr_lm_quant.rescore.nnscore import NNScorer, naive_costs
    model, vocab = build_model(args.vocab)
    rng = random.Random(args.seed)
    utts = [SHAPES[args.shape](rng, args.vocab, args.n) for _ in range(args.utts)]
    variant, *extras = args.variant.split("+")
    if variant == "naive":
        def run():
            return np.concatenate([naive_costs(model, vocab, u) for u in utts])
        naive_costs(model, vocab, [["w2", "w3"]])  # warm-up
    else:
        scorer = NNScorer(model, vocab, token_budget=args.budget, max_row=args.max_row,
                          share_prefixes=variant.startswith("trie"), bf16=variant.endswith("bf16"),
                          self_normalized="selfnorm" in extras,
                          attention_block=0 if "dense_attention" in extras else 32)

        def run():  # all utterances at once: batches span utterances
            return scorer.costs([h for u in utts for h in u])
        scorer.costs([["w2", "w3"]])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu, costs = [], [], None
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        costs = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"seconds": sorted(times)[len(times) // 2], "times": times,
           "cpu_seconds": sorted(cpu)[len(cpu) // 2],
           "words": sum(len(h) for u in utts for h in u), "hyps": sum(len(u) for u in utts),
           "peak_rss_growth_mb": (rss1 - rss0) / 1024, "peak_rss_mb": rss1 / 1024,
           "costs": costs.tolist()}
    if variant != "naive":
        out["stats"] = scorer.stats.to_dict()
    print(json.dumps(out))


def run_variant(args, variant, n, utts, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--variant", variant, "--n", str(n),
           "--utts", str(utts), "--repeats", str(repeats), "--threads", str(args.threads),
           "--vocab", str(args.vocab), "--budget", str(args.budget), "--max-row", str(args.max_row),
           "--seed", str(args.seed + n), "--shape", args.shape]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"rc {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="trie_bf16")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--utts", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per variant (default 1: steadier on a shared machine, and CPU time then "
                        "measures the work)")
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--budget", type=int, default=4096, help="NNScorer token budget")
    p.add_argument("--max-row", type=int, default=256, help="NNScorer packed row size")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--shape", choices=sorted(SHAPES), default="lattice",
                   help="N-best list shape: lattice (cheapest paths of a confusion network, default) or edits "
                        "(independent random edits of one sentence: the least prefix sharing)")
    p.add_argument("--quick", action="store_true", help="fewer utterances and repeats")
    p.add_argument("--sizes", default="20,100,1000", help="N-best sizes to run (default 20,100,1000)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="variants to run, comma-separated (default: %(default)s); see the notes for the +options")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--md", help="also write a markdown table here")
    args = p.parse_args()
    if args.worker:
        return worker(args)
    import numpy as np
    # (N, utterances sampled, repeats): sized to keep the whole run to a few minutes on 2 cores.
    plan = [(20, 8, 3), (100, 3, 3), (1000, 1, 1)]
    if args.quick:
        plan = [(20, 2, 1), (100, 1, 1), (1000, 1, 1)]
    sizes = {int(x) for x in args.sizes.split(",")}
    plan = [x for x in plan if x[0] in sizes]
    results = {"variants": args.variants.split(","), "config": {"d_model": 512, "n_layers": 6, "n_heads": 8, "d_ff": 512, "vocab": args.vocab,
                          "token_budget": args.budget, "max_row": args.max_row, "threads": args.threads,
                          "shape": args.shape, "cpu_count": os.cpu_count()}, "nbest": {}}
    for n, utts, repeats in plan:
        rows = {}
        for v in args.variants.split(","):
            rows[v] = run_variant(args, v, n, utts, repeats)
            print(f"N={n} {v}: {rows[v].get('seconds', rows[v].get('error'))}", file=sys.stderr)
        base = rows.get("naive", {"error": "not run"})
        first = next(iter(rows.values()))
        for v, r in rows.items():
            if "error" in r:
                continue
            r["words_per_s"] = r["words"] / r["seconds"]
            if "error" not in first:  # side by side with the first variant run
                r["cpu_speedup_vs_first"] = first["cpu_seconds"] / r["cpu_seconds"]
                r["max_abs_cost_diff_vs_first"] = float(np.max(np.abs(np.array(r["costs"]) -
                                                                      np.array(first["costs"]))))
            if "error" not in base:
                r["speedup_vs_naive"] = base["seconds"] / r["seconds"]
                r["cpu_speedup_vs_naive"] = base["cpu_seconds"] / r["cpu_seconds"]
                r["max_abs_cost_diff_vs_naive"] = float(np.max(np.abs(np.array(r["costs"]) -
                                                                      np.array(base["costs"]))))
        for r in rows.values():
            r.pop("costs", None)
        results["nbest"][str(n)] = rows
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(results))


def markdown(results) -> str:
    c = results["config"]
    vs_first = results.get("variants", VARIANTS) != VARIANTS  # a chosen set: ratios to its first variant
    lines = [f"NN scoring, shape {c['shape']}, {c['threads']} thread(s), token budget {c['token_budget']}, "
             f"max row {c['max_row']}\n",
             "| N | variant | wall s | CPU s | words/s | x naive (wall) | x naive (CPU) | RSS growth MB | "
             "max cost diff |" + (" x first (CPU) |" if vs_first else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|" if vs_first else "")]
    for n, rows in results["nbest"].items():
        for v, r in rows.items():
            if "error" in r:
                lines.append(f"| {n} | {v} | error: {r['error']} |||||||")
                continue
            lines.append(f"| {n} | {v} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['words_per_s']:.0f} | "
                         f"{r.get('speedup_vs_naive', float('nan')):.2f} | "
                         f"{r.get('cpu_speedup_vs_naive', float('nan')):.2f} | {r['peak_rss_growth_mb']:.0f} | "
                         f"{r.get('max_abs_cost_diff_vs_naive', float('nan')):.4f} |"
                         + (f" {r.get('cpu_speedup_vs_first', float('nan')):.2f} |" if vs_first else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
