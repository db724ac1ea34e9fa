#!/usr/bin/env python3
"""100-best rescoring of an eval2000-sized set on 2 CPU cores: measured on a sample, projected to the whole.

The set: 4,459 utterances (``--utts``) of decoder-shaped lattices (``bench_nbest_from_lattices.py``
explains the shape: hypotheses that differ in length and early as well as late) whose lengths follow
conversational speech: about 30% backchannels and other 1-3 word segments ("uh-huh", "yeah", "right"), the rest
a gamma distribution with a mean of 13 words (eval2000 averages about 9.6 words per segment), in two archives
``lat.1.gz``, ``lat.2.gz`` as a decode dir of ``--nj 2``. The model is the Switchboard configuration (6 x 512,
30k words, random weights), the old LM a 3-gram ARPA trained on random text of the model's words (queried
through kenlm, as a real ARPA is).

What runs is the real path: two ``asr-lm-quant rescore-nbest`` processes at once, one per archive, each
with one thread, with the options ``steps/lmrescore_nbest.sh --nj 2 --N 100`` gives them (lattices read
and turned into 100-best lists, old n-gram costs, NN costs, rescored lattices, Kaldi n-best tables and the
TSV written). Measured on a ``--subset`` of utterances drawn from the same distribution, and on an empty
decode dir for the fixed start-up cost (imports, model and ARPA loading). The two jobs' samples are pooled:

    per utterance = sum over jobs (job time - start-up) / subset utterances
    whole set     = start-up + per utterance * (utterances of the larger job)

from each job's CPU time (what 2 otherwise idle cores would take: each job is single-threaded) and from
wall time. Every variant runs ``--repeats`` times, the repeats interleaved (round 1 of every variant, then
round 2, ...), so a busy spell on a shared machine falls on all of them alike; ``min`` and ``median`` of the
projections are reported. Variants: ``fp32``, ``selfnorm`` (``--self-normalized``), ``bf16``, the packed
models, and ``+prune`` (``--prune-lmwt 7:17``: only hypotheses that can be the 1-best at some scoring
setting are NN-scored) or ``+beam`` (that and ``--prune-beam 5``) after any of them. The naive baseline
(Kaldi's ``compute_sentence_scores.py``: each utterance's N-best as one padded fp32 batch, full softmax)
scores the same 100-best lists (read from the first fp32 run's TSV), also as two processes at once; only its
NN scoring is timed, which favours it. ``--full`` also runs the whole set once (measured).

    PYTHONPATH=. python bench/bench_eval2000_projection.py [--subset 100] [--repeats 3]
        [--variants fp32,selfnorm,fp32+prune,selfnorm+beam] [--work-dir /tmp/bench_models] [--full]
        [--out bench/results/eval2000_projection.json --md ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_nbest_from_lattices as lat_bench  # noqa: E402

EVAL2000_UTTS = 4459
N = 100
WEIGHT = "0.8"
GOAL_SECONDS = 300
# rescore-nbest options of each variant (all: steps/lmrescore_nbest.sh's own)
VARIANTS = {"fp32": [], "selfnorm": ["--self-normalized"], "bf16": ["--bf16"]}
for _name in lat_bench.PACKED:
    VARIANTS[_name] = []
    VARIANTS[_name + "+selfnorm"] = ["--self-normalized"]
PRUNE = ["--prune-lmwt", "7:17"]  # score.sh's LM weights (and its word insertion penalties, the default)
for _name, _opts in list(VARIANTS.items()):
    VARIANTS[_name + "+prune"] = _opts + PRUNE
    VARIANTS[_name + "+beam"] = _opts + PRUNE + ["--prune-beam", "5"]
BACKCHANNEL_SHARE = 0.3
MEAN_WORDS_LONG = 13.0


def conversational_lattices(seed: int, utts: int, vocab_size: int, prefix: str):
    """Decoder-shaped lattices (as ``bench_nbest_from_lattices.synthetic_lattice``) whose 1-best lengths
    follow conversational speech: a share of 1-3 word segments, the rest gamma-distributed."""
    import numpy as np

    from asr_lm_quant.kaldi.synthetic import random_compact_lattice
    rng = np.random.default_rng(seed)
    out = []
    for u in range(utts):
        if rng.random() < BACKCHANNEL_SHARE:
            k = float(rng.integers(1, 4))
        else:
            k = float(np.clip(rng.gamma(2.0, MEAN_WORDS_LONG / 2), 2, 40))
        states = max(3, round(3.3 * k))
        out.append((f"{prefix}{u:05d}", random_compact_lattice(
            rng, num_frames=8 * states, num_states=states, arcs_per_state=3.5, vocab=vocab_size - 1,
            max_tid=5000, eps_prob=0.1)))
    return out


def write_decode_dir(d: Path, lattices, jobs: int = 2) -> list[int]:
    """``lat.1.gz .. lat.<jobs>.gz`` with the utterances split in contiguous halves; utterances per job."""
    from asr_lm_quant.kaldi.archive import write_lattices
    d.mkdir(parents=True, exist_ok=True)
    per = -(-len(lattices) // jobs)
    counts = []
    for j in range(jobs):
        part = lattices[j * per:(j + 1) * per]
        write_lattices(f"ark:| gzip -c > {d}/lat.{j + 1}.gz", part)
        counts.append(len(part))
    (d / "num_jobs").write_text(f"{jobs}\n")
    return counts


def rescore_job(model_dir, arpa, words, decode: Path, job: int, out: Path, extra, threads: int = 1):
    """The command ``steps/lmrescore_nbest.sh`` runs for one job."""
    out.mkdir(parents=True, exist_ok=True)
    return [sys.executable, "-m", "asr_lm_quant.cli", "rescore-nbest", "--overwrite", "--old-lm", str(arpa),
            "--lm-dir", str(model_dir), "--words", str(words), "--n", str(N), "--acwt", "0.1",
            "--weight", WEIGHT, "--device", "cpu", "--token-budget", "4096", "--threads", str(threads), *extra,
            "--lattices", f"ark:gunzip -c {decode}/lat.{job}.gz|",
            "--out-lattices", f"ark:|gzip -c >{out}/lat.{job}.gz",
            "--out-tables", f"{out}/archives.{job}", "--out-nbest", f"{out}/nbest.{job}.tsv",
            "--json", f"{out}/rescore.{job}.json"]


def run_concurrently(cmds, threads: int = 1) -> dict:
    """Start every command at once; wall time of the whole and each one's wall and CPU time (user + system,
    its children included: the gzip pipes)."""
    t0 = time.perf_counter()
    procs = []
    for c in cmds:
        procs.append((subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       env=lat_bench.child_env(threads)), time.perf_counter()))
    jobs = [None] * len(procs)
    left = {p.pid: i for i, (p, _) in enumerate(procs)}
    while left:
        pid, status, ru = os.wait4(-1, 0)
        if pid not in left:
            continue
        i = left.pop(pid)
        p, start = procs[i]
        p.returncode = os.waitstatus_to_exitcode(status)
        jobs[i] = {"wall_s": time.perf_counter() - start, "cpu_s": ru.ru_utime + ru.ru_stime,
                   "max_rss_mb": ru.ru_maxrss / 1024}
    wall = time.perf_counter() - t0
    for i, (p, _) in enumerate(procs):
        err = p.stderr.read().decode(errors="replace")
        p.stdout.close()
        p.stderr.close()
        if p.returncode:
            raise SystemExit(f"failed: {' '.join(map(str, cmds[i]))}\n{err[-3000:]}")
    return {"wall_s": wall, "jobs": jobs}


def project(measured: dict, startup: dict, utts_per_job: list[int], full_per_job: list[int]) -> dict:
    """The whole set's time from the sample's, pooled over the jobs: the fixed start-up, then the time per
    utterance (both jobs' together over both jobs' utterances) times the larger job's utterances."""
    out = {}
    for key, name in (("wall_s", "wall_s"), ("cpu_s", "idle_2_cores_s")):
        work = sum(max(0.0, job[key] - startup[key]) for job in measured["jobs"])
        out[name] = startup[key] + work / sum(utts_per_job) * max(full_per_job)
    return out


def make_arpa(path: Path, vocab, lines: int = 5000) -> None:
    import contextlib
    import io
    from asr_lm_quant.ngram import train_arpa
    text = path.with_suffix(".txt")
    lat_bench.random_text(text, vocab, lines, seed=1)
    with contextlib.redirect_stderr(io.StringIO()):  # the trainer's progress bars
        train_arpa(text, path, order=3)


def naive_pair(a, out: Path, model_dir: Path, tmp: Path) -> dict:
    """The naive baseline on the lists one fp32 run wrote (``nbest.J.tsv``), two processes at once."""
    from asr_lm_quant.kaldi.nbest import group_by_utterance
    from asr_lm_quant.nbest.read import read_nbest
    files = []
    for job in (1, 2):
        groups = group_by_utterance(read_nbest(out / f"nbest.{job}.tsv"))
        f = tmp / f"naive_lists.{job}.json"
        f.write_text(json.dumps([[h.words for h in g] for g in groups.values()]))
        files.append(f)
    args = argparse.Namespace(threads=1, budget=4096, max_row=256)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        t0 = time.perf_counter()
        res = list(pool.map(lambda f: lat_bench.run_variant(args, "naive", f, model_dir, 1,
                                                            f.with_suffix(".npy")), files))
        wall = time.perf_counter() - t0
    for r in res:
        if "error" in r:
            raise SystemExit(f"naive baseline failed: {r['error']}")
    return {"wall_s_processes": wall, "jobs": [{"scoring_wall_s": r["seconds"], "scoring_cpu_s": r["cpu_seconds"],
                                                "words": r["words"]} for r in res]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--utts", type=int, default=EVAL2000_UTTS, help="utterances of the whole set (default 4459)")
    ap.add_argument("--subset", type=int, default=100,
                    help="utterances measured, both jobs together (default 100)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of every variant (default 3)")
    ap.add_argument("--variants", default="fp32,selfnorm,fp32+prune,selfnorm+prune,selfnorm+beam",
                    help=f"rescore-nbest variants (default %(default)s; of {', '.join(VARIANTS)})")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    ap.add_argument("--full", action="store_true", help="also run the whole set once, measured")
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--vocab", type=int, default=30000, help="model vocabulary size (default 30000)")
    ap.add_argument("--config", default=str(lat_bench.SWBD_CONFIG), help="LM config (default: the Switchboard one)")
    ap.add_argument("--work-dir", help="keep built models here and reuse them (default: a temporary dir)")
    ap.add_argument("--out", help="write the JSON here")
    ap.add_argument("--md", help="write a markdown table here")
    a = ap.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r} (one of {', '.join(VARIANTS)})")
    if "fp32" not in variants and not a.no_naive:
        variants.insert(0, "fp32")  # the naive baseline scores the lists the fp32 run wrote
    V = a.vocab
    symbols = lat_bench.synthetic_symbols(V)
    vocab = lat_bench.model_vocabulary(lat_bench.synthetic_words(V), V)
    info = lat_bench.machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = Path(a.work_dir) if a.work_dir else tmp / "models"
        dirs = lat_bench.build_models(root, vocab, [v.split("+")[0] for v in variants], 1, log=say,
                                      config=Path(a.config))
        words = tmp / "words.txt"
        symbols.save(words)
        arpa = tmp / "old.arpa"
        make_arpa(arpa, vocab)
        per_job_full = [-(-a.utts // 2), a.utts - -(-a.utts // 2)]
        t0 = time.perf_counter()
        sub_per_job = [min(-(-a.subset // 2), per_job_full[0]), min(a.subset // 2, per_job_full[1])]
        lats = conversational_lattices(a.seed, per_job_full[0] if a.full else sub_per_job[0], V, "sw_a")
        lats2 = conversational_lattices(a.seed + 1, per_job_full[1] if a.full else sub_per_job[1], V, "sw_b")
        sub = tmp / "decode_subset"
        write_decode_dir(sub, lats[:sub_per_job[0]] + lats2[:sub_per_job[1]])
        empty = tmp / "decode_empty"
        write_decode_dir(empty, [], jobs=1)
        say(f"lattices ready ({time.perf_counter() - t0:.0f} s)")
        results = {"benchmark": "eval2000-sized 100-best rescoring, 2 jobs x 1 thread", "machine": info,
                   "set": {"utterances": a.utts, "n": N, "jobs": 2, "utterances_per_job": per_job_full,
                           "lattices": "synthetic, decoder-shaped, conversational lengths "
                                       f"({BACKCHANNEL_SHARE:.0%} of 1-3 words, the rest mean "
                                       f"{MEAN_WORDS_LONG:g})"},
                   "subset": {"utterances_per_job": sub_per_job}, "repeats": a.repeats,
                   "model": {"config": lat_bench.config_name(a.config), "vocab_size": V,
                             "files": lat_bench.model_facts(dirs)},
                   "goal_seconds": GOAL_SECONDS, "variants": {}}
        runs = {v: [] for v in variants}
        for r in range(a.repeats):  # interleaved: every variant once per round
            for v in variants:
                name = v.split("+")[0]
                model_dir = dirs[name] if name in lat_bench.PACKED else dirs["fp32"]
                extra = VARIANTS[v]
                out = tmp / f"out_{v}"
                startup = run_concurrently([rescore_job(model_dir, arpa, words, empty, 1, tmp / f"empty_{v}",
                                                        extra)])["jobs"][0]
                measured = run_concurrently([rescore_job(model_dir, arpa, words, sub, j, out, extra)
                                             for j in (1, 2)])
                summaries = [json.loads((out / f"rescore.{j}.json").read_text()) for j in (1, 2)]
                runs[v].append({"measured_subset": measured, "startup_no_utterance": startup,
                                "projected_full": project(measured, startup, sub_per_job, per_job_full),
                                "summaries": summaries})
                say(f"round {r + 1} {v}: subset {measured['wall_s']:.1f} s wall, "
                    f"projected {runs[v][-1]['projected_full']}")
                if v == "fp32" and r == 0 and not a.no_naive:
                    nv = naive_pair(a, out, dirs["fp32"], tmp)
                    scale = [f / s for f, s in zip(per_job_full, sub_per_job)]
                    nv["projected_full"] = {
                        "wall_s": max(j["scoring_wall_s"] * k for j, k in zip(nv["jobs"], scale)),
                        "idle_2_cores_s": max(j["scoring_cpu_s"] * k for j, k in zip(nv["jobs"], scale))}
                    results["naive_baseline"] = nv
                    say(f"naive: projected {nv['projected_full']}")
        for v in variants:
            summaries = runs[v][0]["summaries"]
            proj = {k: [x["projected_full"][k] for x in runs[v]] for k in ("wall_s", "idle_2_cores_s")}
            row = {"subset": {"utterances": sum(x["utterances"] for x in summaries),
                              "hypotheses": sum(x["hypotheses"] for x in summaries),
                              "pruned": sum(x.get("pruned", 0) for x in summaries),
                              "nn_positions": sum(x.get("nn_positions", 0) for x in summaries),
                              "words_scored": sum(x["words"] for x in summaries)},
                   "runs": [{k: x[k] for k in ("measured_subset", "startup_no_utterance", "projected_full")}
                            for x in runs[v]],
                   "projected_full": {f"{k}_{stat}": f(vals) for k, vals in proj.items()
                                      for stat, f in (("min", min), ("median", statistics.median))}}
            if a.full:
                full = tmp / "decode_full"
                if not (full / "num_jobs").exists():
                    write_decode_dir(full, lats + lats2)
                name = v.split("+")[0]
                model_dir = dirs[name] if name in lat_bench.PACKED else dirs["fp32"]
                fm = run_concurrently([rescore_job(model_dir, arpa, words, full, j, tmp / f"full_{v}", VARIANTS[v])
                                       for j in (1, 2)])
                row["measured_full"] = fm
                say(f"{v}: whole set {fm['wall_s']:.1f} s wall")
            results["variants"][v] = row
    for v, row in results["variants"].items():
        p = row["projected_full"]
        p["meets_goal_idle_2_cores"] = p["idle_2_cores_s_median"] < GOAL_SECONDS
        if "naive_baseline" in results:
            nb = results["naive_baseline"]["projected_full"]
            p["x_naive_idle_2_cores"] = nb["idle_2_cores_s"] / p["idle_2_cores_s_median"]
    text = json.dumps(results, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    if a.md:
        Path(a.md).write_text(markdown(results))
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    s = r["set"]
    rows = r["variants"].values()
    measured = any(row.get("measured_full") for row in rows)  # columns only where the run has them
    naive = r.get("naive_baseline") is not None and all("x_naive_idle_2_cores" in row["projected_full"]
                                                        for row in rows)
    lines = [f"eval2000-sized 100-best rescoring ({s['utterances']} utterances, 2 jobs x 1 thread), "
             f"{r['model']['config']} with {r['model']['vocab_size']} words, lattices {s['lattices']}; "
             f"{m['cpu']}, {m['cpu_count']} cores, avx512_bf16 {'yes' if m['avx512_bf16'] else 'no'}, load "
             f"average at start {m['load_average_at_start'][0]:.1f}; {m['date']}. Sample measured: "
             f"{sum(r['subset']['utterances_per_job'])} utterances, {r['repeats']} interleaved runs per "
             "system, pooled over the two jobs; the whole set projected from CPU time (idle cores) and "
             "from wall time (under the load).\n",
             "| system | hyps scored / listed | NN positions | whole set, 2 idle cores: min | median | "
             "wall: median" + (" | whole set (measured)" if measured else "") + (" | x naive" if naive else "")
             + " |", "|---" * (6 + measured + naive) + "|"]
    if naive:
        p = r["naive_baseline"]["projected_full"]
        lines.append(f"| naive baseline (NN scoring only) | - | - | - | {p['idle_2_cores_s'] / 60:.1f} min | "
                     f"{p['wall_s'] / 60:.1f} min" + (" | -" if measured else "") + " | 1.00 |")
    for v, row in r["variants"].items():
        sub, p = row["subset"], row["projected_full"]
        full = row.get("measured_full")
        line = (f"| rescore-nbest {v} | {sub['hypotheses'] - sub['pruned']} / {sub['hypotheses']} | "
                f"{sub['nn_positions']} | {p['idle_2_cores_s_min'] / 60:.1f} min | "
                f"{p['idle_2_cores_s_median'] / 60:.1f} min | {p['wall_s_median'] / 60:.1f} min")
        if measured:
            line += f" | {full['wall_s'] / 60:.1f} min" if full else " | -"
        if naive:
            line += f" | {p['x_naive_idle_2_cores']:.2f}"
        lines.append(line + " |")
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    sys.exit(main())
