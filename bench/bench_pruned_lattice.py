#!/usr/bin/env python3
"""Pruned lattice rescoring beside the path cover and 100-best rescoring: WER, NN positions and time per
utterance, every method in one run on the same lattices, model and old LM.

**Data.**

- The mini recipe's first pass (``--recipe-dirs``, default ``recipes/mini/quick``, what ``./run.sh --quick``
  leaves; more test sentences can be decoded beside it, see bench/results/pruned_lattice.md): its
  ``exp/ngram/decode_test_{dev,eval}`` lattices, ``exp/ngram/3gram.arpa`` as the old LM,
  ``data/lang/words.txt``, the references in ``data/test_{dev,eval}/text`` and the NN LMs ``--models``
  (default ``exp/lm``, the float Transformer, and ``exp/quant/admm-4``, its 4-bit model scored packed).
  WER is Kaldi's scoring sweep (LMWT 7..17, penalties 0, 0.5, 1) of each output per weight: the best over
  the sweep per half, and the eval WER at the (weight, LMWT, penalty) best on dev.
- The real Kaldi text lattice of ``../shared/fixtures/kaldi-lattice-text`` (skipped if absent): it has no
  reference and no LM of its own, so a small random Transformer and a 3-gram over random text of its words
  stand in; reported is whether each method's best path is the exact best (every path rescored), with
  positions and time.

**Methods**: ``nbest100`` (``rescore_nbest_job``, N=100), ``path-cover`` (``rescore_lattice_job``, beam 5,
epsilon 0.5), ``pruned`` (``--ngram-order``, ``--beam``), ``pruned-exhaustive`` (order 1000, no beam: every
history scored; the reference for what pruning saves).

**Counting**: NN positions are what the scorer reports (trie nodes: shared prefixes once), summed over its
calls. Time is the whole job (read, search, NN, write) per utterance; the machine is shared with other
work, so runs are interleaved (``--repeats``) and medians and ratios to ``nbest100`` are reported.

    PYTHONPATH=. python bench/bench_pruned_lattice.py [--recipe-dirs recipes/mini/quick] [--repeats 3] \\
        [--out bench/results/pruned_lattice.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


ALL_METHODS = ("nbest100", "path-cover", "pruned", "pruned-exhaustive")


class CountingScorer:
    """A scorer that sums the positions and seconds of every call (the jobs read ``stats`` of the last)."""

    def __init__(self, scorer):
        self.inner = scorer
        self.positions = 0
        self.hypotheses = 0
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _count(self):
        st = self.inner.stats
        self.positions += int(st.positions)
        self.hypotheses += int(st.hypotheses)
        self.seconds += float(st.seconds)

    def costs(self, hyps):
        out = self.inner.costs(hyps)
        self._count()
        return out

    def word_costs(self, hyps):
        out = self.inner.word_costs(hyps)
        self._count()
        return out


def machine() -> dict:
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import torch
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "note": "shared machine (other jobs running): compare medians and ratios of interleaved runs"}


def run_method(method, scorer, old, symbols, weights, lattices, out_dir, args):
    """One job of ``method`` on the rspecifier ``lattices``; writes ``out_dir/w{weight}/lat.1.gz``."""
    from asr_lm_quant.rescore.lattice import rescore_lattice_job
    from asr_lm_quant.rescore.nbest import rescore_nbest_job
    from asr_lm_quant.rescore.pruned import PrunedOptions, rescore_lattice_pruned_job
    outs = {}
    for w in weights:
        d = Path(out_dir) / f"w{w:g}"
        d.mkdir(parents=True, exist_ok=True)
        outs[w] = f"ark:| gzip -c > {d / 'lat.1.gz'}"
        (d / "num_jobs").write_text("1\n")
    counting = CountingScorer(scorer)
    t0 = time.perf_counter()
    if method == "nbest100":
        s = rescore_nbest_job(scorer=counting, ngram_lm=old, symbols=symbols, weights=weights, lattices=lattices,
                              n=args.n, acoustic_scale=0.1, out_lattices=outs)
    elif method == "path-cover":
        s = rescore_lattice_job(scorer=counting, ngram_lm=old, symbols=symbols, weights=weights,
                                lattices=lattices, out_lattices=outs, acoustic_scale=0.1, beam=5.0, epsilon=0.5)
    else:
        opts = (PrunedOptions(order=args.ngram_order, beam=args.beam) if method == "pruned"
                else PrunedOptions(order=1000, beam=1e9))
        s = rescore_lattice_pruned_job(scorer=counting, ngram_lm=old, symbols=symbols, weights=weights,
                                       lattices=lattices, out_lattices=outs, opts=opts)
    wall = time.perf_counter() - t0
    return {"utterances": s["utterances"], "seconds": wall, "positions": counting.positions,
            "nn_hypotheses": counting.hypotheses, "nn_seconds": counting.seconds}


def wer_sweeps(data, words, out_dir, weights):
    from asr_lm_quant.scoring.kaldi_sweep import sweep_decode_dir
    out = {}
    for w in weights:
        s = sweep_decode_dir(data, words, Path(out_dir) / f"w{w:g}", stats=False, plot=False, progress=False)
        out[w] = {(r["lmwt"], str(r["wip"])): (r["errors"], r["ref_words"]) for r in s["settings"]}
    return out


def recipe_bench(args, recipe_dir, model_dir, methods, tmp):
    from asr_lm_quant.kaldi.symbols import SymbolTable
    from asr_lm_quant.ngram import ArpaLM
    from asr_lm_quant.quant.packed import load_lm_for_inference
    from asr_lm_quant.rescore.nnscore import make_scorer
    root = Path(recipe_dir)
    tmp = tmp / root.name
    words = root / "data" / "lang" / "words.txt"
    model, vocab = load_lm_for_inference(root / model_dir)
    scorer = make_scorer(model, vocab)
    old, symbols = ArpaLM(root / "exp" / "ngram" / "3gram.arpa"), SymbolTable.load(words)
    weights = [float(w) for w in args.weights.split(",")]
    halves = {}
    for half in ("dev", "eval"):
        dec = root / "exp" / "ngram" / f"decode_test_{half}"
        nj = int((dec / "num_jobs").read_text())
        lattices = "ark:gunzip -c " + " ".join(str(dec / f"lat.{j}.gz") for j in range(1, nj + 1)) + " |"
        halves[half] = (root / "data" / f"test_{half}", lattices)
    runs = {(m, h): [] for m in methods for h in halves}
    for rep in range(args.repeats):  # interleaved: every method sees the same machine load
        for half, (_, lattices) in halves.items():
            for m in methods:
                runs[m, half].append(run_method(m, scorer, old, symbols, weights, lattices,
                                                tmp / model_dir / m / half, args))
    result = {"data": str(root), "model": model_dir, "weights": weights, "methods": {},
              "first_pass_best_wer": {h: (root / "exp" / "ngram" / f"decode_test_{h}" / "scoring_kaldi" / "best_wer")
                                      .read_text().split("]")[0] + "]" for h in halves}}
    for m in methods:
        sweeps = {h: wer_sweeps(halves[h][0], words, tmp / model_dir / m / h, weights) for h in halves}
        best = {h: min(e / n * 100 for by_w in sweeps[h].values() for e, n in by_w.values()) for h in halves}
        # the eval WER at the setting (weight, LMWT, penalty) with the fewest dev errors
        dev_pick = min(((e, w, k) for w, by_w in sweeps["dev"].items() for k, (e, _) in by_w.items()))
        e, n = sweeps["eval"][dev_pick[1]][dev_pick[2]]
        utts = sum(runs[m, h][0]["utterances"] for h in halves)
        per_rep = [sum(runs[m, h][r]["seconds"] for h in halves) / utts for r in range(args.repeats)]
        result["methods"][m] = {
            "best_wer": {h: round(v, 2) for h, v in best.items()},
            "eval_wer_at_dev_setting": round(e / n * 100, 2),
            "dev_setting": {"weight": dev_pick[1], "lmwt": dev_pick[2][0], "wip": dev_pick[2][1]},
            "utterances": utts,
            "nn_positions_per_utt": sum(runs[m, h][0]["positions"] for h in halves) / utts,
            "nn_hypotheses_per_utt": sum(runs[m, h][0]["nn_hypotheses"] for h in halves) / utts,
            "seconds_per_utt_median": statistics.median(per_rep),
            "seconds_per_utt_runs": per_rep,
            "nn_seconds_per_utt_median": statistics.median(
                sum(runs[m, h][r]["nn_seconds"] for h in halves) / utts for r in range(args.repeats)),
        }
    base = result["methods"].get("nbest100")
    if base:
        for v in result["methods"].values():
            v["positions_vs_nbest100"] = round(v["nn_positions_per_utt"] / base["nn_positions_per_utt"], 3)
            v["time_vs_nbest100"] = round(v["seconds_per_utt_median"] / base["seconds_per_utt_median"], 3)
    return result


def fixture_bench(args, methods, tmp):
    """The real Kaldi text lattice with a stand-in random model: best path vs the exact best."""
    import numpy as np
    import torch

    from asr_lm_quant.kaldi.algorithms import best_path
    from asr_lm_quant.kaldi.archive import read_lattices
    from asr_lm_quant.kaldi.nbest import nbest_paths
    from asr_lm_quant.kaldi.symbols import SymbolTable
    from asr_lm_quant.lm.model import LMConfig, TransformerLM
    from asr_lm_quant.ngram import ArpaLM, train_arpa
    from asr_lm_quant.rescore.nnscore import make_scorer
    from asr_lm_quant.text.vocab import Vocabulary
    d = Path(args.fixture_dir)
    if not (d / "lattice.lat").exists():
        return {"skipped": f"no lattice at {d}"}
    syms = SymbolTable.load(d / "words.txt")
    words = [w for w in syms.words_in_order() if w not in ("<eps>", "#0", "<s>", "</s>")]
    rng = np.random.default_rng(0)
    (tmp / "fx_text").write_text("".join(" ".join(rng.choice(words, size=rng.integers(2, 9))) + "\n"
                                         for _ in range(300)))
    train_arpa(tmp / "fx_text", tmp / "fx.arpa", order=3)
    old = ArpaLM(tmp / "fx.arpa")
    torch.manual_seed(0)
    vocab = Vocabulary(["<s>", "<unk>"] + words)
    scorer = make_scorer(TransformerLM(LMConfig(vocab_size=len(vocab), d_model=64, n_layers=2, n_heads=4,
                                                d_ff=128, dropout=0.0)).eval(), vocab)
    w = 0.8
    (key, lat), = list(read_lattices(f"ark:{d / 'lattice.lat'}"))
    exact = []
    paths = nbest_paths(lat, 10 ** 6, 0.1)
    nn = scorer.costs([syms.words(p.words) for p in paths])
    for p, c in zip(paths, nn):
        exact.append((p.total_cost(0.1) + w * (c - old.sentence_cost(syms.words(p.words))), tuple(p.words)))
    exact.sort()
    out = {"lattice": f"{d.name}/lattice.lat", "states": lat.num_states, "arcs": lat.num_arcs,
           "paths": len(paths), "stand_in_model": "random 2x64 Transformer, 3-gram on random text of its words",
           "weight": w, "methods": {}}
    for m in methods:
        times, res = [], None
        for _ in range(args.repeats):
            res = run_method(m, scorer, old, syms, [w], f"ark:{d / 'lattice.lat'}", tmp / "fx" / m, args)
            times.append(res["seconds"])
        (_, rescored), = list(read_lattices(f"ark:gunzip -c {tmp / 'fx' / m / f'w{w:g}' / 'lat.1.gz'} |"))
        bp = best_path(rescored, 0.1)
        out["methods"][m] = {"nn_positions": res["positions"], "seconds_median": statistics.median(times),
                             "best_path_is_exact_best": tuple(bp.words) == exact[0][1],
                             "best_cost_minus_exact": round(bp.total_cost(0.1) - exact[0][0], 5)}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe-dirs", default=str(REPO / "recipes" / "mini" / "quick"),
                   help="recipe dirs (comma-separated) holding a first pass and models as run.sh leaves them")
    p.add_argument("--models", default="exp/lm,exp/quant/admm-4", help="NN LM dirs under --recipe-dir")
    p.add_argument("--weights", default="0.5,0.8")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--beam", type=float, default=5.0)
    p.add_argument("--ngram-order", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", default=",".join(ALL_METHODS),
                   help="methods on the recipe dirs; pruned-exhaustive scores every history: small lattices "
                        "only (the real fixture always runs all)")
    shared = Path(os.environ.get("ASR_LM_QUANT_SHARED", REPO.parent / "shared"))
    p.add_argument("--fixture-dir", default=str(shared / "fixtures" / "kaldi-lattice-text"))
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "pruned_lattice.json"))
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    methods = a.methods.split(",")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        from asr_lm_quant.rescore.pruned import PrunedOptions
        d = PrunedOptions()
        result = {"machine": machine(), "options": {"n": a.n, "beam": a.beam, "ngram_order": a.ngram_order,
                                                    "lookahead": d.lookahead, "batch_states": d.batch_states,
                                                    "repeats": a.repeats, "threads": a.threads},
                  "mini_recipe": {Path(r).name: {m: recipe_bench(a, r, m, methods, tmp) for m in a.models.split(",")}
                                  for r in a.recipe_dirs.split(",")},
                  "real_fixture": fixture_bench(a, ALL_METHODS, tmp)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _wer(line: str) -> str:
    return line.split()[1]  # "%WER 5.77 [ 3 / 52, ... ]" -> "5.77"


def markdown(r: dict) -> str:
    """The WER, positions and time of every method per data set and model, then the real-lattice check."""
    m, o = r["machine"], r["options"]
    weights = sorted({w for models in r["mini_recipe"].values() for res in models.values() for w in res["weights"]})
    lines = [f"Pruned lattice rescoring beside path cover and {o['n']}-best (`bench_pruned_lattice.py`): "
             f"{m['cpu']}, {m['cores']} cores, {o['threads']} torch thread, Python {m['python']}, torch {m['torch']}; "
             f"{m['note']}; times are medians of {o['repeats']} interleaved runs. pruned: `--ngram-order "
             f"{o['ngram_order']} --beam {o['beam']:g}`, lookahead {o['lookahead']}, {o['batch_states']} states per "
             f"lattice and round. WER: Kaldi's sweep of each rescored dir at weights {', '.join(map(str, weights))}, "
             "best per half, and "
             "the eval WER at the setting best on dev; NN positions: what the scorer computed (trie nodes).", "",
             "| data | model | method | dev best | eval best | eval @ dev setting | NN positions/utt | vs 100-best "
             "| s/utt (median) | vs 100-best |", "|---|---|---|---|---|---|---|---|---|---|"]
    for data, models in r["mini_recipe"].items():
        for model, res in models.items():
            fp = res["first_pass_best_wer"]
            lines.append(f"| {data} | {model} | first pass | {_wer(fp['dev'])} | {_wer(fp['eval'])} | | | | | |")
            for method, v in res["methods"].items():
                lines.append(f"| {data} | {model} | {method} | {v['best_wer']['dev']:.2f} | "
                             f"{v['best_wer']['eval']:.2f} | {v['eval_wer_at_dev_setting']:.2f} | "
                             f"{v['nn_positions_per_utt']:.1f} | {v['positions_vs_nbest100']:.2f}x | "
                             f"{v['seconds_per_utt_median']:.3f} | {v['time_vs_nbest100']:.2f}x |")
    f = r.get("real_fixture")
    if f:
        lines += ["", f"Real Kaldi text lattice (`{f['lattice']}`, {f['states']} states, {f['arcs']} arcs, "
                  f"{f['paths']} paths) with a stand-in model ({f['stand_in_model']}), weight {f['weight']}:", "",
                  "| method | NN positions | best path = exact best | best cost - exact |", "|---|---|---|---|"]
        for method, v in f["methods"].items():
            lines.append(f"| {method} | {v['nn_positions']} | {v['best_path_is_exact_best']} | "
                         f"{v['best_cost_minus_exact']:.0e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
