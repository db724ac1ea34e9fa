#!/usr/bin/env python3
"""NN n-best scoring speed on N-best lists taken from lattices: 20, 100 and 1000-best, every scorer variant side
by side in one run, against the naive baseline of Kaldi's ``compute_sentence_scores.py``.

**Data.** N-best lists are extracted from lattices as ``lattice-to-nbest --acoustic-scale=0.1 --n=N`` does
(``asr_lm_quant.kaldi.nbest.nbest_paths``, distinct word sequences), so hypotheses differ in length and
anywhere in the sentence, early as well as late. The lattices are

- a Kaldi decode dir (``--decode-dir DIR`` with its ``lat.*.gz``; ``--words`` its ``words.txt``, default
  ``DIR/../graph/words.txt``), or
- by default, decoder-shaped lattices from ``asr_lm_quant.kaldi.synthetic.random_compact_lattice``: per
  utterance a target length ``k ~ Gamma(2, 6)`` words (mean 12, clipped to 2..40), ``3.3 k`` states,
  ``8`` frames per state, ``3.5`` arcs per state (each arc spans 1-5 states: words of different lengths
  compete, and paths of different word counts), 10% epsilon arcs, words uniform over the vocabulary; the
  1-best then has ~12 words. The JSON records the N-best shape that resulted (words per hypothesis, spread
  of lengths within an utterance, where hypotheses first differ from the 1-best, how much a prefix trie
  shares).

**Model.** ``recipes/swbd/conf/lm_swbd.json`` (6 layers, d_model 512, 8 heads, d_ff 512, post-norm, tied
embeddings) with a 30,000-word vocabulary (``--vocab``; a decode dir's words, padded to it) and random
weights: speed does not depend on the values. It is saved once as a model directory declaring
``self_norm_alpha`` (so the self-normalised variant runs through the real check) and quantized with
``asr-lm-quant quantize``: ``--method ptq --bits 8/4/2``, and a Hessian mixed-precision plan at 2 bits on
average (16x; candidates 1,2,4,8, 8 word-frequency bands, 2 Hutchinson samples and 2 ADMM steps on random
text: a real allocation of a real run, too short to be accurate, which speed does not depend on). Models are
kept in ``--work-dir`` and reused when it is given.

**Variants** (each in its own process: its own peak memory; all on the same lists; every model loaded with
``load_lm_for_inference``, as ``rescore-nbest`` loads it):

- ``naive``: each utterance's N-best as one padded fp32 batch, full log-softmax, no sharing;
- ``trie_fp32``, ``trie_bf16``: NNScorer, prefix trees packed in rows, 32-node attention blocks;
- ``selfnorm``: ``trie_fp32`` without the normaliser (``--self-normalized``);
- ``ptq8``, ``ptq4``, ``ptq2``, ``mixed16x``: the packed models scored from their codes (fp32 products);
  ``+bf16`` or ``+selfnorm`` appended to a name adds that option (``ptq4+selfnorm``).

Reported per N and variant: median wall and CPU seconds of ``--repeats`` runs, words/s (hypothesis words,
end of sentence not counted) on each, ratios to ``naive`` (the CPU-time ratio is the steadier one on a shared
machine), peak RSS growth over the loaded model, and the largest cost difference from ``naive`` for the
variants with the same weights and normaliser. Writes JSON and a markdown table.

    PYTHONPATH=. python bench/bench_nbest_from_lattices.py [--full] [--threads 1] [--work-dir exp/bench_models] \\
        [--decode-dir recipes/mini/exp/ngram/decode_test --words recipes/mini/data/lang/words.txt] \\
        [--out bench/results/nbest_from_lattices.json --md bench/results/nbest_from_lattices.md]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SWBD_CONFIG = REPO / "recipes" / "swbd" / "conf" / "lm_swbd.json"
VARIANTS = ["naive", "trie_fp32", "trie_bf16", "selfnorm", "ptq8", "ptq4", "ptq2", "mixed16x"]
PACKED = {"ptq8", "ptq4", "ptq2", "mixed16x"}
SELF_NORM_ALPHA = 0.1  # declared only: the weights are random, speed does not depend on training
ACOUSTIC_SCALE = 0.1
MEAN_WORDS = 12.0


# --- lattices and N-best lists --------------------------------------------------------------------------
def synthetic_lattice(rng: np.random.Generator, vocab: int, mean_words: float = MEAN_WORDS):
    """One decoder-shaped CompactLattice (see the module notes) with word ids 1 .. vocab - 1."""
    from asr_lm_quant.kaldi.synthetic import random_compact_lattice
    k = float(np.clip(rng.gamma(2.0, mean_words / 2), 2, 40))
    states = max(4, round(3.3 * k))
    return random_compact_lattice(rng, num_frames=8 * states, num_states=states, arcs_per_state=3.5,
                                  vocab=vocab, max_tid=5000, eps_prob=0.1)


def synthetic_words(vocab_size: int) -> list[str]:
    """Lattice word ``i`` (1 .. vocab_size - 2) is ``w<i>``: with ``<s>`` and ``<unk>`` the model's vocabulary."""
    return [f"w{i}" for i in range(1, vocab_size - 1)]


def synthetic_symbols(vocab_size: int):
    from asr_lm_quant.kaldi.symbols import SymbolTable
    return SymbolTable([("<eps>", 0)] + [(w, i) for i, w in enumerate(synthetic_words(vocab_size), 1)])


def synthetic_lattices(seed: int, utts: int, vocab_size: int, prefix: str = "utt"):
    rng = np.random.default_rng(seed)
    return [(f"{prefix}{u:05d}", synthetic_lattice(rng, vocab_size - 1)) for u in range(utts)]


def decode_dir_lattices(decode_dir: str, limit: int):
    """``(key, lattice)`` of the first ``limit`` utterances of ``DIR/lat.*.gz`` (job order)."""
    from asr_lm_quant.errors import InputError
    from asr_lm_quant.kaldi.archive import read_lattices
    files = sorted(glob.glob(os.path.join(decode_dir, "lat.*.gz")),
                   key=lambda p: int(p.rsplit(".", 2)[-2]) if p.rsplit(".", 2)[-2].isdigit() else 0)
    if not files:
        raise InputError(decode_dir, "no lat.*.gz in the decode dir")
    out = []
    for f in files:
        for key, lat in read_lattices(f"ark:gunzip -c {f}|", kind="compact"):
            out.append((key, lat))
            if len(out) >= limit:
                return out
    return out


def nbest_lists(lattices, n: int, symbols) -> list[list[list[str]]]:
    """Per utterance, its ``n`` best distinct word sequences (``lattice-to-nbest`` at acoustic scale 0.1)."""
    from asr_lm_quant.kaldi.nbest import nbest_paths
    out = []
    for key, lat in lattices:
        hyps = [symbols.words(p.words, key=key) for p in nbest_paths(lat, n, ACOUSTIC_SCALE)]
        if hyps:
            out.append(hyps)
    return out


def nbest_shape(utts) -> dict:
    """What the lists look like: sizes, lengths, where hypotheses leave the 1-best, how much a trie shares."""
    lens = [len(h) for u in utts for h in u]
    spread, first, nodes = [], [], 0
    for u in utts:
        spread.append(float(np.std([len(h) for h in u])))
        best = u[0]
        for h in u[1:]:
            k = 0
            while k < min(len(h), len(best)) and h[k] == best[k]:
                k += 1
            first.append(k / max(1, len(best)))
        nodes += len({tuple(h[:k]) for h in u for k in range(1, len(h) + 1)})
    q = np.quantile(first, [0.25, 0.5, 0.75]).tolist() if first else [None] * 3
    return {"utterances": len(utts), "hypotheses": len(lens), "words": sum(lens),
            "hyps_per_utt_mean": len(lens) / max(1, len(utts)),
            "words_per_hyp_mean": float(np.mean(lens)), "words_per_hyp_min": min(lens),
            "words_per_hyp_max": max(lens), "length_sd_within_utt_mean": float(np.mean(spread)),
            "first_difference_rel_q25_median_q75": q,
            "trie_words_over_words": nodes / max(1, sum(lens))}


# --- models -----------------------------------------------------------------------------------------------
def model_vocabulary(words: list[str], vocab_size: int):
    """``<s>``, ``<unk>``, the lattice words, then filler words up to ``vocab_size`` (the model's size)."""
    from asr_lm_quant.text.vocab import Vocabulary
    from asr_lm_quant.kaldi.symbols import NON_WORDS
    seen = {"<s>", "<unk>"}
    out = ["<s>", "<unk>"]
    for w in words:
        if w not in seen and w not in NON_WORDS and not w.startswith("#"):
            seen.add(w)
            out.append(w)
    i = 0
    while len(out) < vocab_size:
        if f"filler{i}" not in seen:
            out.append(f"filler{i}")
        i += 1
    return Vocabulary(out)


def random_text(path: Path, vocab, lines: int, seed: int = 0) -> None:
    """Sentences of 5-25 Zipf-distributed model words (for the Hessian plan's held-out batches)."""
    rng = np.random.default_rng(seed)
    words = vocab.words[2:]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            ranks = np.minimum(rng.zipf(1.3, size=int(rng.integers(5, 26))), len(words)) - 1
            f.write(" ".join(words[r] for r in ranks) + "\n")


def quantize_cli(args: list[str], threads: int) -> None:
    cmd = [sys.executable, "-m", "asr_lm_quant.cli", "quantize", *args, "--threads", str(threads), "--overwrite"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads))
    if res.returncode:
        raise SystemExit(f"quantize failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")


def build_models(root: Path, vocab, variants, threads: int, log=print, config: Path = SWBD_CONFIG) -> dict:
    """Model dirs by name (``fp32`` and the packed ones ``variants`` need), built once under ``root`` with the
    ``model`` section of the LM config file ``config``."""
    import torch
    from asr_lm_quant.lm.files import SELF_NORM_KEY, save_lm
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    root.mkdir(parents=True, exist_ok=True)
    dirs = {"fp32": root / "fp32"}
    stamp = {"vocab_size": len(vocab), "vocab_head": vocab.words[:50], "config": Path(config).read_text()}
    stamp_file = root / "models.json"
    if not (stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp and
            (dirs["fp32"] / "config.json").exists()):
        cfg = json.loads(Path(config).read_text())["model"]
        torch.manual_seed(0)
        model = TransformerLM(LMConfig.from_dict({**cfg, "vocab_size": len(vocab), "dropout": 0.0})).eval()
        save_lm(dirs["fp32"], model, vocab, extra={SELF_NORM_KEY: SELF_NORM_ALPHA})
        for name in PACKED:  # models of another vocabulary are stale
            if (root / name / "results.json").exists():
                (root / name / "results.json").unlink()
        stamp_file.write_text(json.dumps(stamp))
    needed = sorted({v.split("+")[0] for v in variants} & PACKED)
    for name in needed:
        dirs[name] = root / name
        if (dirs[name] / "results.json").exists():
            continue
        t0 = time.perf_counter()
        if name.startswith("ptq"):
            quantize_cli([str(dirs["fp32"]), str(dirs[name]), "--method", "ptq", "--bits", name[3:]], threads)
        else:
            text = root / "random_text.txt"
            random_text(text, vocab, 400)
            quantize_cli([str(dirs["fp32"]), str(dirs[name]), "--method", "hessian", "--budget-bits", "2",
                          "--candidates", "1,2,4,8", "--bands", "8", "--train", str(text), "--valid", str(text),
                          "--steps", "2", "--project-every", "1", "--hessian-max-samples", "2",
                          "--hessian-batches", "1", "--tokens-per-batch", "512"], threads)
        log(f"built {name} in {time.perf_counter() - t0:.0f} s")
    return dirs


def model_facts(dirs: dict) -> dict:
    out = {}
    for name, d in dirs.items():
        files = list(Path(d).glob("*.safetensors"))
        row = {"file_mb": sum(f.stat().st_size for f in files) / 1e6}
        res = Path(d) / "results.json"
        if res.exists():
            r = json.loads(res.read_text())
            row.update(avg_bits=r.get("avg_bits"), compression=r.get("compression"),
                       plan_bits=sorted(set((r.get("plan_bits") or {}).values())))
        out[name] = row
    return out


def config_name(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def child_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


# --- one variant in its own process ---------------------------------------------------------------------
def worker(a) -> None:
    import torch
    torch.set_num_threads(a.threads)
    from asr_lm_quant.lm.files import check_self_normalized
    from asr_lm_quant.quant.packed import load_lm_for_inference
    from asr_lm_quant.rescore.nnscore import NNScorer, naive_costs
    utts = json.loads(Path(a.lists).read_text())
    name, *extras = a.variant.split("+")
    model_dir = a.model_dir
    model, vocab = load_lm_for_inference(model_dir)
    if name == "naive":
        def run():
            return np.concatenate([naive_costs(model, vocab, u) for u in utts])
        naive_costs(model, vocab, [["w1", "w2"]])  # warm-up
        scorer = None
    else:
        selfnorm = name == "selfnorm" or "selfnorm" in extras
        if selfnorm:
            check_self_normalized(model_dir)  # as rescore-nbest --self-normalized checks it
        scorer = NNScorer(model, vocab, token_budget=a.budget, max_row=a.max_row, share_prefixes=True,
                          bf16=name == "trie_bf16" or "bf16" in extras, self_normalized=selfnorm)

        def run():  # all utterances at once: batches span utterances, as in rescore-nbest's chunks
            return scorer.costs([h for u in utts for h in u])
        scorer.costs([h for h in utts[0][:8]])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu, costs = [], [], None
    for _ in range(a.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        costs = run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu), "times": times,
           "cpu_times": cpu, "words": sum(len(h) for u in utts for h in u),
           "peak_rss_growth_mb": (rss1 - rss0) / 1024, "peak_rss_mb": rss1 / 1024}
    if scorer is not None:
        out["stats"] = scorer.stats.to_dict()
    np.save(a.costs_out, costs)
    print(json.dumps(out))


def run_variant(a, variant: str, lists: Path, model_dir: Path, repeats: int, costs_out: Path) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--variant", variant, "--lists", str(lists),
           "--model-dir", str(model_dir), "--repeats", str(repeats), "--threads", str(a.threads),
           "--budget", str(a.budget), "--max-row", str(a.max_row), "--costs-out", str(costs_out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env(a.threads))
    if res.returncode:
        tail = res.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit status {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine() -> dict:
    flags = ""
    try:
        flags = next(x for x in open("/proc/cpuinfo") if x.startswith("flags"))
    except (OSError, StopIteration):
        pass
    name = next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    import torch
    return {"cpu": name, "cpu_count": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "avx512f": "avx512f" in flags, "amx": "amx_bf16" in flags, "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d")}


# --- the run --------------------------------------------------------------------------------------------
PLAN = [(20, 12, 3), (100, 4, 3), (1000, 1, 3)]          # (N, utterances, repeats): a few minutes
PLAN_FULL = [(20, 60, 5), (100, 12, 5), (1000, 3, 3)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--lists", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--costs-out", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per variant (default: by N, 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per variant (default 1)")
    ap.add_argument("--budget", type=int, default=4096, help="NNScorer token budget (default 4096)")
    ap.add_argument("--max-row", type=int, default=256, help="NNScorer packed row size (default 256)")
    ap.add_argument("--vocab", type=int, default=30000, help="model vocabulary size (default 30000)")
    ap.add_argument("--config", default=str(SWBD_CONFIG),
                    help="LM config whose model section is used (default: recipes/swbd/conf/lm_swbd.json; "
                         "recipes/mini/conf/lm.json for the mini model)")
    ap.add_argument("--decode-dir", help="a Kaldi decode dir whose lat.*.gz give the N-best lists (default: "
                                         "synthetic decoder-shaped lattices)")
    ap.add_argument("--words", help="words.txt of --decode-dir (default DIR/../graph/words.txt)")
    ap.add_argument("--sizes", default="20,100,1000", help="N-best sizes (default 20,100,1000)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="default: %(default)s")
    ap.add_argument("--full", action="store_true", help="more utterances and repeats (~5x longer)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work-dir", help="keep the built models here and reuse them (default: a temporary dir)")
    ap.add_argument("--out", help="write the JSON here")
    ap.add_argument("--md", help="write the markdown table here")
    a = ap.parse_args(argv)
    if a.worker:
        worker(a)
        return 0
    from asr_lm_quant.kaldi.symbols import SymbolTable

    variants = [v for v in a.variants.split(",") if v]
    sizes = {int(x) for x in a.sizes.split(",")}
    plan = [p for p in (PLAN_FULL if a.full else PLAN) if p[0] in sizes]
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    info = machine()
    if a.decode_dir:
        words_path = a.words or os.path.join(a.decode_dir, "..", "graph", "words.txt")
        symbols = SymbolTable.load(words_path)
        vocab = model_vocabulary(symbols.words_in_order(), a.vocab)
        source = {"decode_dir": a.decode_dir, "words": words_path}
    else:
        symbols = synthetic_symbols(a.vocab)
        vocab = model_vocabulary(synthetic_words(a.vocab), a.vocab)
        source = {"synthetic": "random_compact_lattice, Gamma(2, 6) words (mean 12, 2..40), 3.3 states per "
                               "word, 8 frames per state, 3.5 arcs per state, 10% epsilon arcs"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = Path(a.work_dir) if a.work_dir else tmp / "models"
        t0 = time.perf_counter()
        dirs = build_models(root, vocab, variants, a.threads, log=say, config=Path(a.config))
        say(f"models ready ({time.perf_counter() - t0:.0f} s)")
        results = {"benchmark": "NN n-best scoring, N-best lists from lattices", "machine": info,
                   "threads": a.threads, "source": source, "acoustic_scale": ACOUSTIC_SCALE,
                   "model": {"config": config_name(a.config), "vocab_size": len(vocab),
                             "weights": "random", "declared_self_norm_alpha": SELF_NORM_ALPHA,
                             "files": model_facts(dirs)},
                   "scorer": {"token_budget": a.budget, "max_row": a.max_row, "attention_block": 32},
                   "variants": variants, "nbest": {}}
        for n, utts, repeats in plan:
            lattices = (decode_dir_lattices(a.decode_dir, utts) if a.decode_dir
                        else synthetic_lattices(a.seed + n, utts, a.vocab))
            lists = nbest_lists(lattices, n, symbols)
            lists_file = tmp / f"lists_{n}.json"
            lists_file.write_text(json.dumps(lists))
            rows, costs = {}, {}
            for v in variants:
                name = v.split("+")[0]
                model_dir = dirs[name] if name in PACKED else dirs["fp32"]
                cf = tmp / f"costs_{n}_{v}.npy"
                rows[v] = run_variant(a, v, lists_file, model_dir, a.repeats or repeats, cf)
                if "error" not in rows[v]:
                    costs[v] = np.load(cf)
                say(f"N={n} {v}: {rows[v].get('cpu_seconds', rows[v].get('error'))}")
            add_ratios(rows, costs)
            results["nbest"][str(n)] = {"shape": nbest_shape(lists), "repeats": a.repeats or repeats,
                                        "variants": rows}
    text = json.dumps(results, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if a.md:
        Path(a.md).write_text(markdown(results))
    return 0


def add_ratios(rows: dict, costs: dict) -> None:
    base = rows.get("naive", {})
    for v, r in rows.items():
        if "error" in r:
            continue
        r["words_per_s"] = r["words"] / r["seconds"]
        r["words_per_cpu_s"] = r["words"] / r["cpu_seconds"]
        if "error" not in base and "seconds" in base:
            r["x_naive_wall"] = base["seconds"] / r["seconds"]
            r["x_naive_cpu"] = base["cpu_seconds"] / r["cpu_seconds"]
        # same weights and normaliser as the baseline: the costs must agree
        if "naive" in costs and v.split("+")[0] in ("trie_fp32", "trie_bf16") and "selfnorm" not in v:
            r["max_cost_diff_vs_naive"] = float(np.max(np.abs(costs[v] - costs["naive"])))


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [f"NN n-best scoring, N-best lists from lattices ({next(iter(results['source']))}), "
             f"{results['model']['config']} with {results['model']['vocab_size']} words, "
             f"{results['threads']} thread(s); {m['cpu']}, {m['cpu_count']} cores, avx512_bf16 "
             f"{'yes' if m['avx512_bf16'] else 'no'}, load average at start {m['load_average_at_start'][0]:.1f}; "
             f"{m['date']}\n",
             "| N | utts | hyps | words/hyp | variant | wall s | CPU s | words/s (CPU) | x naive (CPU) | "
             "x naive (wall) | RSS growth MB | max cost diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, block in results["nbest"].items():
        s = block["shape"]
        for v, r in block["variants"].items():
            head = f"| {n} | {s['utterances']} | {s['hypotheses']} | {s['words_per_hyp_mean']:.1f} | {v} |"
            if "error" in r:
                lines.append(f"{head} error: {r['error']} |||||||")
                continue
            diff = r.get("max_cost_diff_vs_naive")
            lines.append(f"{head} {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['words_per_cpu_s']:,.0f} | "
                         f"{r.get('x_naive_cpu', float('nan')):.2f} | {r.get('x_naive_wall', float('nan')):.2f} | "
                         f"{r['peak_rss_growth_mb']:.0f} | {'-' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
