"""Training throughput (tokens/s) of the LM configurations: fp32 and bf16 autocast, and the output layer's
loss fused and chunked (``lm.output_loss``, what training uses) or through the whole logits, side by side.

Runs the real training step (``lm.loop.lm_loss``, backward, clipping, the configured optimizer) on
batches shaped as each configuration's ``tokens_per_batch``, with sentence-length rows (default 32
tokens) of random word ids. The variants' steps alternate on the same model so that machine noise hits
them alike; medians and the ratios to fp32 through the logits are reported. Prints JSON (and writes it with
--json).

    .venv/bin/python bench/bench_train.py [--steps 5] [--threads 2] [--precisions fp32,bf16] [--json out.json]

``--throughput``: tokens/s of the real training step (``lm.loop.take_step`` on WikiText-2 sentence lengths, the
mini recipe's base configuration) against the model's fp32 FLOPs per token and the machine's measured fp32
``torch.mm`` rate on the step's own shapes, with where the rest of the step goes; writes
bench/results/train_throughput.json. The machine may be shared: steps of the variants alternate, medians are
reported, and ratios are what compares across runs.
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


THROUGHPUT_JSON = REPO / "bench/results/train_throughput.json"
WIKITEXT = Path(os.environ.get("ASR_LM_QUANT_WIKITEXT2", REPO.parent / "shared/data/wikitext-2"))


def wikitext_plan(opts, vocab_size: int, sentences: int, tmp: Path):
    """A training batch plan over the first ``sentences`` sentences of WikiText-2's training text (paragraphs
    split at full stops), with its ``vocab_size - 3`` most frequent words: real sentence lengths and ids."""
    import collections
    import lzma

    from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
    from asr_lm_quant.text.vocab import Vocabulary

    sents = []
    with lzma.open(WIKITEXT / "train.txt.xz", "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.strip().startswith("="):
                sents += [s.strip() + " ." for s in line.split(" . ") if len(s.split()) > 1]
            if len(sents) >= sentences:
                break
    sents = sents[:sentences]
    (tmp / "train.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    counts = collections.Counter(w for s in sents for w in s.split())
    words = ["<s>", "</s>", "<unk>"] + [w for w, _ in counts.most_common() if w not in ("<s>", "</s>", "<unk>")]
    vocab = Vocabulary(words[:vocab_size])
    enc = encode_file(tmp / "train.txt", vocab)
    return BatchPlan(sequences(enc, vocab.bos, opts.max_len), opts.tokens_per_batch, seed=opts.seed), len(vocab)


def flops_per_token(cfg, mean_len: float) -> dict:
    """fp32 FLOPs of one training token (forward + backward = 3 x forward): 6 per weight of every matrix
    product (the layers' and the output layer's; the embedding is a lookup) and the causal attention's
    products, 2 x 2 x (t + 1) x d per layer forward at position t, i.e. 2 (T + 1) d on average."""
    d, f, L, V = cfg.d_model, cfg.d_ff, cfg.n_layers, cfg.vocab_size
    layer_weights = L * (4 * d * d + 2 * d * f)
    out = {"layers": 6 * layer_weights, "output_layer": 6 * d * V, "attention": 3 * L * 2 * (mean_len + 1) * d}
    out["total"] = sum(out.values())
    return out


def matmul_shapes(cfg, rows: int, chunk: int) -> list[tuple]:
    """The matrix products of one training step as ``(m, k, n, times)``: each layer product forward and its two
    backward products ([N, in] x [in, out], [N, out] x [out, in], [out, N] x [N, in]), and the output layer's,
    a chunk of positions at a time."""
    d, f, V, N = cfg.d_model, cfg.d_ff, cfg.vocab_size, rows
    shapes = []
    for i, o in ((d, 3 * d), (d, d), (d, f), (f, d)):
        shapes += [(N, i, o, cfg.n_layers), (N, o, i, cfg.n_layers), (o, N, i, cfg.n_layers)]
    k = max(1, N // chunk)
    return shapes + [(chunk, d, V, k), (chunk, V, d, k), (V, chunk, d, k)]


def matmul_seconds(shapes, dtype) -> tuple[float, float]:
    """``(FLOPs, seconds)`` of ``torch.mm`` over ``shapes`` (each timed once after a warm-up call), weighted as
    the step uses them."""
    flops = secs = 0.0
    for m, k, n, times in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.mm(a, b)
        secs += timed(lambda: torch.mm(a, b)) * times
        flops += 2 * m * k * n * times
    return flops, secs


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    flags = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    return (f"{names[0] if names else 'unknown CPU'}, {len(names) or os.cpu_count()} cores"
            f"{', avx512_bf16' if 'avx512_bf16' in flags else ''}{', amx' if 'amx_bf16' in flags else ''}")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def parts_of_step(model, opt, batch, opts, bf16: bool) -> dict:
    """Seconds of the step's parts, each measured alone on ``batch``: the output layer fused with its loss
    (forward + backward), the attention products (scaled dot-product attention forward + backward, all
    layers; and beside it the same without attention dropout), and the optimizer (clipping + the update, on the gradients of a real backward)."""
    import torch.nn.functional as F

    from asr_lm_quant.lm.loop import autocast, lm_loss
    from asr_lm_quant.lm.model import output_loss

    B, T = batch.inputs.shape
    cfg = model.cfg
    hidden = torch.randn(B, T, cfg.d_model, requires_grad=True)

    def output():
        with autocast("cpu", bf16):
            loss = output_loss(model.out, hidden, batch.targets)
        loss.backward()

    dt = torch.bfloat16 if bf16 else torch.float32
    q, k, v = (torch.randn(B, cfg.n_heads, T, cfg.d_model // cfg.n_heads, dtype=dt, requires_grad=True)
               for _ in range(3))

    def attention(dropout=cfg.dropout):
        for _ in range(cfg.n_layers):
            F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout).sum().backward()

    opt.zero_grad(set_to_none=True)
    loss, n = lm_loss(model, batch, "cpu", bf16)
    (loss / n).backward()

    def update():
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_norm)
        opt.step()
    # attention dropout keeps the CPU off the fused attention kernel: its cost, measured beside (not in the sum)
    return {"output_layer_and_softmax": timed(output), "attention": timed(attention), "optimizer": timed(update),
            "attention_without_dropout": timed(lambda: attention(0.0))}


def run_throughput(args) -> dict:
    """tokens/s of the training step (fp32 and bf16 autocast, steps alternating) and its share of the fp32
    matmul rate; where the fp32 step's time goes."""
    import datetime
    import statistics
    import tempfile

    from asr_lm_quant.lm.loop import StepSpec, lm_loss, step_seed, take_step
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.lm.optim import build_optimizer, lr_at
    from asr_lm_quant.lm.options import load_train_config
    from asr_lm_quant.lm.output_loss import CHUNK_ROWS

    path, vocab_size = CONFIGS[args.throughput_config]
    model_cfg, opts = load_train_config(path)
    with tempfile.TemporaryDirectory() as tmp:
        plan, vocab_size = wikitext_plan(opts, vocab_size, args.sentences, Path(tmp))
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=vocab_size, **model_cfg)
    model = TransformerLM(cfg).train()
    opt = build_optimizer(model, opts)
    variants = args.precisions.split(",")
    step_s = {v: [] for v in variants}
    parts = {v: [] for v in variants}
    data_s, tokens, lengths = [], [], []
    rates = {"float32": [], "bfloat16": []}  # measured between the steps: the machine's load changes
    shapes = matmul_shapes(cfg, opts.tokens_per_batch, CHUNK_ROWS)
    it = plan.iterate(0)
    for i in range(args.steps + 1):
        t = time.perf_counter()
        _, batch = next(it)
        data_s.append(time.perf_counter() - t)
        tokens.append(batch.tokens)
        lengths.append(batch.inputs.shape[1])
        for v in variants:
            bf16 = v == "bf16"
            spec = StepSpec(opt, lambda b, step, bf16=bf16: _scaled(lm_loss(model, b, "cpu", bf16)),
                            lambda step: [lr_at(step, 1000, opts)] * len(opt.param_groups),
                            list(model.parameters()), opts.clip_norm,
                            seed=lambda step: torch.manual_seed(step_seed(opts.seed, step, 0)))
            took = timed(lambda: take_step(spec, batch, i))
            if i and v == variants[0]:
                for dt in (torch.float32, torch.bfloat16):
                    flops_mm, secs_mm = matmul_seconds(shapes, dt)
                    rates[str(dt).replace("torch.", "")].append(flops_mm / secs_mm / 1e9)
            if i:  # the first step warms up allocators and kernels
                step_s[v].append(took / batch.tokens)  # seconds per token: batches differ in size
                parts[v].append({k: x / batch.tokens for k, x in parts_of_step(model, opt, batch, opts,
                                                                                bf16).items()})
    mean_len = statistics.mean(lengths[1:])
    flops = flops_per_token(cfg, mean_len)
    result = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "note": "a shared 2-core machine: other work ran beside this; compare the ratios, not the rates",
              "threads": torch.get_num_threads(), "torch": torch.__version__, "config": str(path.relative_to(REPO)),
              "data": f"WikiText-2 train, first {args.sentences} sentences, {vocab_size} words",
              "parameters": model.num_parameters(), "steps": args.steps,
              "median_batch_tokens": int(statistics.median(tokens[1:])), "mean_row_len": mean_len,
              "fp32_flops_per_token": flops, "matmul_gflops": {k: statistics.median(r) for k, r in rates.items()},
              "variants": {v: _summary(v, step_s[v], parts[v], data_s[1:], tokens[1:], flops, rates)
                           for v in variants}}
    text = json.dumps(result, indent=2)
    print(text)
    out = Path(args.json) if args.json else THROUGHPUT_JSON
    out.write_text(text + "\n")
    return result


def _summary(v, step_s, parts, data_s, tokens, flops, rates) -> dict:
    """tokens/s, the share of the fp32 matmul rate (median over steps of each step's FLOP rate over the
    matmul rate measured beside it) and where the step's time goes (medians, as shares of the median step)."""
    import statistics

    per_token = statistics.median(step_s)
    shares = [flops["total"] / s / 1e9 / r for s, r in zip(step_s, rates["float32"])]
    prof = {k: statistics.median(p[k] for p in parts) for k in parts[0]}
    no_dropout = prof.pop("attention_without_dropout")
    prof["data"] = statistics.median(d / n for d, n in zip(data_s, tokens))
    # an estimate, not a measurement: the layers' matrix products at the measured matmul rate of the dtype
    rate = statistics.median(rates["bfloat16" if v == "bf16" else "float32"])
    prof["layer_products_at_matmul_rate"] = flops["layers"] / (rate * 1e9)
    prof["rest"] = per_token - sum(prof.values())
    out = {"tokens_per_s": 1 / per_token, "useful_gflops": flops["total"] / per_token / 1e9,
           "share_of_fp32_matmul_rate": statistics.median(shares), "share_per_step": shares,
           "share_of_step": {k: x / per_token for k, x in prof.items()},
           "attention_without_dropout_share_of_step": no_dropout / per_token}
    print(f"{v}: {out['tokens_per_s']:.0f} tokens/s, {out['useful_gflops']:.1f} GFLOP/s, "
          f"{out['share_of_fp32_matmul_rate']:.0%} of the fp32 matmul rate", file=sys.stderr)
    return out


def _scaled(loss_n):
    loss, n = loss_n
    return loss / n, loss.detach(), n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode (after one warm-up step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--row-len", type=int, default=32, help="tokens per row (a typical sentence)")
    ap.add_argument("--configs", default="mini,swbd", help=f"comma-separated, from {sorted(CONFIGS)}")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (bf16 is emulated and slow on "
                                                               "CPUs without AVX512-BF16 or AMX)")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--sentences", type=int, default=20000, help="--throughput: WikiText-2 sentences read")
    ap.add_argument("--throughput-config", default="mini", help=f"--throughput: one of {sorted(CONFIGS)}")
    ap.add_argument("--throughput", action="store_true",
                    help="measure the training step's share of the fp32 matmul rate instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.throughput:
        return run_throughput(args)
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


NAMES = {"mini": "mini (2 x 128, 10k words)", "mini_deep": "mini deep (6 x 128, 10k words)",
         "swbd": "Switchboard (6 x 512, 30k words)"}
PARTS = {"output_layer_and_softmax": "output layer and softmax", "attention": "attention",
         "optimizer": "optimizer", "data": "data", "layer_products_at_matmul_rate": "layer products (estimate)",
         "rest": "rest"}


def markdown(r: dict) -> str:
    """The table of a run: throughput against the fp32 matmul rate (``--throughput``), else the output layer
    fused with its loss against through the logits."""
    if "matmul_gflops" not in r:
        return _output_loss_markdown(r)
    f, mm = r["fp32_flops_per_token"], r["matmul_gflops"]
    lines = [f"Training throughput (`bench_train.py --throughput`): {r['config']}, {r['parameters']:,} parameters, "
             f"{r['data']}; {r['steps']} steps of each variant alternating, medians, batches of "
             f"{r['median_batch_tokens']:,} tokens (rows of {r['mean_row_len']:.1f} on average); {r['machine']}, "
             f"{r['threads']} thread(s), torch {r['torch']}, {r['date']}; {r['note']}. "
             f"fp32 FLOPs per token: {f['total'] / 1e6:.1f}M ({f['output_layer'] / f['total']:.0%} the output layer). "
             f"Matmul rate measured between the steps on the step's own shapes: fp32 {mm['float32']:.1f}, "
             f"bf16 {mm['bfloat16']:.1f} GFLOP/s. The last {len(PARTS)} columns: "
             "shares of the step's time (the layer products estimated at the matmul rate).", "",
             "| variant | tokens/s | useful GFLOP/s | share of the fp32 matmul rate | "
             + " | ".join(PARTS.values()) + " |", "|---" * (4 + len(PARTS)) + "|"]
    for name, v in r["variants"].items():
        shares = " | ".join(f"{v['share_of_step'][k]:.0%}" for k in PARTS)
        lines.append(f"| {name} | {v['tokens_per_s']:,.0f} | {v['useful_gflops']:.1f} | "
                     f"{v['share_of_fp32_matmul_rate']:.0%} | {shares} |")
    return "\n".join(lines) + "\n"


def _output_loss_markdown(r: dict) -> str:
    lines = [f"Training speed, the output layer fused with its loss against through the logits: {r['threads']} "
             f"threads, torch {r['torch']}, {r['cpu_count']} cores, "
             f"avx512_bf16 {'yes' if r['avx512_bf16'] else 'no'}, median of each variant's steps (interleaved).", "",
             "| configuration | through the logits, tokens/s | fused, tokens/s | speed-up |", "|---|---|---|---|"]
    for key, res in r["results"].items():
        logits, fused = res["fp32_logits"]["tokens_per_s"], res["fp32_fused"]["tokens_per_s"]
        lines.append(f"| {NAMES.get(key, key)} | {logits:,.0f} | {fused:,.0f} | {fused / logits:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
