#!/usr/bin/env python3
"""Packed models at rescoring time, as a user sees them: whole-process memory and scoring speed against the
float32 model.

The model has the shape of a Kaldi pytorchnn Transformer imported with ``import-kaldi-lm`` (6 layers x 512,
8 heads, feed-forward 512, ReLU, post-norm, tied 30k-word embedding; random weights: speed and memory do not
depend on the values), saved as a float32 model directory and quantized by PTQ to 8, 4 and 2 bits (the 2-bit
file is 6.15 MiB). All variants score the same n-best list (100-best lists of short and long utterances).

Memory (``memory``): each variant in its own process, one thread, as ``rescore-nbest`` runs. Every figure is
MiB over the same process right after ``import torch`` (what any torch program costs), split into anonymous
memory (``anon``: the process's own) and file-backed pages (``file``: torch's shared libraries, paged in by
the first operations whatever the model; shared between processes):

- ``load``: after importing the scoring code and loading the model; ``load_peak``: the highest point while
  loading; ``score_peak``: the highest point of the whole run (its peak RSS); ``scoring_working``: how far
  scoring rose above ``load``.
- ``saved_weight_mib``: the float model's weight bytes minus the packed file's; ``score_peak_saving`` the
  float model's ``score_peak`` minus the packed one's, and ``share_of_weight_saving`` their ratio (goal: at
  least 0.8).

Speed (``speed``): one process holds every model and scores the list with each in turn, ``--repeats``
rounds interleaved (so load on a shared machine falls on all variants alike), one thread, CPU time;
``min_s`` and ``median_s`` per variant and ``speed_vs_fp32`` (float32 model's median / variant's median;
goal: at least 1). ``max_cost_diff``: packed costs against the dequantized model's on the first 200
hypotheses.

    .venv/bin/python bench/bench_packed_inference.py [--quick] [--work-dir DIR] [--bf16] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = ["fp32", "ptq8", "ptq4", "ptq2"]


def build(root: Path, quick: bool) -> dict:
    import torch

    from asr_lm_quant.lm.files import save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.quant.packed import save_packed
    from asr_lm_quant.quant.plan import QuantPlan
    from asr_lm_quant.quant.ptq import quantize_model
    from asr_lm_quant.text.vocab import Vocabulary

    V = 5000 if quick else 30000
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(V - 2)])
    cfg = LMConfig(vocab_size=V, d_model=512, n_layers=2 if quick else 6, n_heads=8, d_ff=512, dropout=0.0,
                   norm="post", activation="relu", tie_embeddings=True)
    torch.manual_seed(0)
    base = TransformerLM(cfg).eval()
    for p in base.parameters():  # weights of a trained model's size
        torch.nn.init.normal_(p, 0, 0.05)
    save_lm(root / "fp32", base, vocab)
    for bits in (8, 4, 2):
        m = TransformerLM(cfg).eval()
        m.load_state_dict(base.state_dict())
        plan = quantize_model(m, QuantPlan.uniform(m, bits))
        save_packed(root / f"ptq{bits}", m, plan, vocab)
    return {"vocab_size": V, "n_layers": cfg.n_layers}


def hypotheses(n: int, vocab_size: int, seed: int = 0) -> list[str]:
    """100-best lists of utterances of 1 to 25 words (many short ones, as conversational speech has),
    hypotheses that differ from their utterance's first in one to three words."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        words = min(25, max(1, int(rng.lognormvariate(1.9, 0.8))))
        base = [f"w{min(vocab_size - 3, int(rng.paretovariate(1.0)))}" for _ in range(words)]
        for _ in range(min(100, n - len(out))):
            h = list(base)
            for _ in range(rng.randint(1, 3)):
                h[rng.randrange(len(h))] = f"w{rng.randrange(vocab_size - 2)}"
            out.append(" ".join(h))
    return out


MEMORY_CHILD = r"""
import gc, json, sys
def status():
    d = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status")
         if l.startswith(("VmRSS", "VmHWM", "RssAnon", "RssFile"))}
    return {"rss": d["VmRSS"], "anon": d["RssAnon"], "file": d["RssFile"], "peak": d["VmHWM"]}
import torch
base = status()
torch.set_num_threads(1)
from asr_lm_quant.quant.packed import load_lm_for_inference
from asr_lm_quant.rescore.nnscore import NNScorer
imports = status()
open("/proc/self/clear_refs", "w").write("5")  # the peak from here on
model, vocab = load_lm_for_inference(sys.argv[1])
gc.collect()
load = status()
hyps = [h.split() for h in open(sys.argv[2]).read().splitlines()]
NNScorer(model, vocab).costs(hyps)
end = status()
over = lambda s, k: s[k] - base[k]
print(json.dumps({"imports": over(imports, "rss"),
                  "load": {"rss": over(load, "rss"), "anon": over(load, "anon"), "file": over(load, "file")},
                  "load_peak": load["peak"] - base["rss"], "score_peak": end["peak"] - base["rss"],
                  "scoring_working": end["peak"] - load["rss"],
                  "end": {"rss": over(end, "rss"), "anon": over(end, "anon"), "file": over(end, "file")}}))
"""

SPEED_CHILD = r"""
import json, statistics, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from asr_lm_quant.quant.packed import load_lm_for_inference
from asr_lm_quant.rescore.nnscore import NNScorer
root, names, repeats, modes = sys.argv[1], sys.argv[2].split(","), int(sys.argv[4]), sys.argv[5].split(",")
hyps = [h.split() for h in open(sys.argv[3]).read().splitlines()]
scorers = {}
for n in names:
    model, vocab = load_lm_for_inference(f"{root}/{n}")
    for mode in modes:
        scorers[n, mode] = NNScorer(model, vocab, bf16=mode == "bf16")
        scorers[n, mode].costs(hyps[:50])  # warm-up
times = {k: [] for k in scorers}
for _ in range(repeats):  # interleaved: every round scores with every variant
    for k, s in scorers.items():
        t0 = time.process_time(); costs = s.costs(hyps); times[k].append(time.process_time() - t0)
        np.save(f"{root}/{k[0]}.{k[1]}.npy", costs[:200])
print(json.dumps({f"{n}/{m}": {"cpu_s": ts, "min_s": min(ts), "median_s": statistics.median(ts)}
                  for (n, m), ts in times.items()}))
"""


def run_child(code: str, *args) -> dict:
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 2-layer, 5k-word model and fewer hypotheses")
    ap.add_argument("--hypotheses", type=int, help="n-best list size (default 2000; --quick 300)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved speed rounds (default 3)")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 products")
    ap.add_argument("--work-dir", help="keep the built models here and reuse them on the next run")
    ap.add_argument("--out")
    a = ap.parse_args()
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.work_dir or tmp)
        root.mkdir(parents=True, exist_ok=True)
        built = root / "built.json"
        if built.exists():
            shape = json.loads(built.read_text())
        else:  # models built once and kept (quantizing takes minutes)
            shape = build(root, a.quick)
            built.write_text(json.dumps(shape))
        V = shape["vocab_size"]
        hyps = hypotheses(a.hypotheses or (300 if a.quick else 2000), V)
        hf = root / "hyps.txt"
        hf.write_text("\n".join(hyps) + "\n")
        memory = {}
        for name in VARIANTS:
            r = run_child(MEMORY_CHILD, root / name, hf)
            weights = sum(f.stat().st_size for f in (root / name).iterdir() if f.suffix == ".safetensors")
            r["weight_file_mib"] = weights / 2 ** 20
            memory[name] = r
        fp = memory["fp32"]
        for name in VARIANTS[1:]:
            r = memory[name]
            r["saved_weight_mib"] = fp["weight_file_mib"] - r["weight_file_mib"]
            r["score_peak_saving"] = fp["score_peak"] - r["score_peak"]
            r["load_saving"] = fp["load"]["rss"] - r["load"]["rss"]
            r["share_of_weight_saving"] = r["score_peak_saving"] / r["saved_weight_mib"]
        modes = ["fp32"] + (["bf16"] if a.bf16 else [])
        speed = run_child(SPEED_CHILD, root, ",".join(VARIANTS), hf, a.repeats, ",".join(modes))
        words = sum(len(h.split()) + 1 for h in hyps)
        for mode in modes:
            ref = speed[f"fp32/{mode}"]["median_s"]
            for name in VARIANTS:
                r = speed[f"{name}/{mode}"]
                r["words_per_s"] = words / r["median_s"]
                r["speed_vs_fp32"] = ref / r["median_s"]
        # The dequantized model of each packed one, for the cost differences.
        from asr_lm_quant.quant.packed import load_packed
        from asr_lm_quant.rescore.nnscore import NNScorer
        check = [h.split() for h in hyps[:200]]
        for name in VARIANTS[1:]:
            model, vocab, _ = load_packed(root / name)
            for mode in modes:
                ref = NNScorer(model, vocab, bf16=mode == "bf16").costs(check)
                got = np.load(root / f"{name}.{mode}.npy")
                speed[f"{name}/{mode}"]["max_cost_diff"] = float(np.abs(ref - got).max())
    out = {"benchmark": "packed inference", "quick": a.quick, "threads": 1, "hypotheses": len(hyps),
           "words": words, "units": "MiB over the same process after import torch; CPU seconds",
           "memory": memory, "speed": speed,
           "min_share_of_weight_saving": min(memory[n]["share_of_weight_saving"] for n in VARIANTS[1:]),
           "min_fp32_speed_vs_fp32": min(speed[f"{n}/fp32"]["speed_vs_fp32"] for n in VARIANTS[1:])}
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


NAMES = {"fp32": "fp32", "ptq8": "8-bit", "ptq4": "4-bit", "ptq2": "2-bit"}


def markdown(r: dict) -> str:
    """The tables of a run: memory of each variant over ``import torch``, then speed and cost differences."""
    mem, speed = r["memory"], r["speed"]
    model = "2 x 512, 5k words" if r["quick"] else (
        "the shape of a Kaldi pytorchnn Transformer after `import-kaldi-lm`: 6 x 512, feed-forward 512, ReLU, "
        "post-norm, tied 30k-word embedding")
    lines = [f"Packed models at rescoring time (`bench_packed_inference.py`): {model}, random weights, PTQ to "
             f"8/4/2 bits; {r['hypotheses']:,} hypotheses in 100-best lists ({r['words']:,} words scored, end of "
             f"sentence included), {r['threads']} thread per process. Units: {r['units']}.", "",
             "| model | weights file | after load | of which anon / file-backed | peak while loading | "
             "peak of the run | scoring working memory | peak saved / weight bytes saved |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in mem.items():
        share = f"{m['share_of_weight_saving']:.2f}x" if "share_of_weight_saving" in m else "-"
        lines.append(f"| {NAMES.get(name, name)} | {m['weight_file_mib']:.1f} | {m['load']['rss']:.1f} | "
                     f"{m['load']['anon']:.1f} / {m['load']['file']:.1f} | {m['load_peak']:.1f} | "
                     f"{m['score_peak']:.1f} | {m['scoring_working']:.1f} | {share} |")
    lines += ["", "| model | products | rounds | CPU s (median) | CPU s (min) | words/s | speed vs fp32 model | "
              "max cost diff vs dequantized |", "|---|---|---|---|---|---|---|---|"]
    for key, v in speed.items():
        name, mode = key.split("/")
        diff = f"{v['max_cost_diff']:.0e}" if "max_cost_diff" in v else "-"
        lines.append(f"| {NAMES.get(name, name)} | {mode} | {len(v['cpu_s'])} | {v['median_s']:.2f} | "
                     f"{v['min_s']:.2f} | {v['words_per_s']:,.0f} | {v['speed_vs_fp32']:.2f}x | {diff} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
