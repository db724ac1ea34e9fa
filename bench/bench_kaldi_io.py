"""Lattice archive I/O: read/write throughput of a synthetic lat.gz, and peak memory of streaming vs loading.

Writes a synthetic gzip archive of Kaldi-shaped CompactLattices (default 300 utterances, ~400 frames, ~1600
arcs each), then measures, each ``--repeats`` times (medians reported): binary and text write, streaming
read, and peak Python heap (tracemalloc) of streaming through the archive vs loading every lattice into a
dict. Prints JSON.

    .venv/bin/python bench/bench_kaldi_io.py [--utts 300] [--frames 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from asr_lm_quant.kaldi.archive import read_lattices, write_lattices
from asr_lm_quant.kaldi.synthetic import random_compact_lattice


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utts", type=int, default=300)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    lats = [(f"utt{i:05d}", random_compact_lattice(rng, num_frames=args.frames, num_states=args.frames,
                                                   arcs_per_state=4.0)) for i in range(args.utts)]
    n_arcs = sum(lt.num_arcs for _, lt in lats)
    with tempfile.TemporaryDirectory() as d:
        gz = Path(d) / "lat.1.gz"
        txt = Path(d) / "lat.txt.gz"
        res = {"utterances": args.utts, "arcs": n_arcs, "frames_per_utt": args.frames}
        w_bin = [timed(lambda: write_lattices(f"ark:{gz}", lats))[0] for _ in range(args.repeats)]
        w_txt = [timed(lambda: write_lattices(f"ark,t:{txt}", lats))[0] for _ in range(args.repeats)]
        raw = sum(len(b) for b in [gz.read_bytes()])
        res["gz_bytes"] = raw

        def stream(spec):
            n = 0
            for _, lt in read_lattices(spec):
                n += lt.num_arcs
            return n
        r_bin = [timed(lambda: stream(f"ark:{gz}"))[0] for _ in range(args.repeats)]
        r_pipe = [timed(lambda: stream(f"ark:gunzip -c {gz}|"))[0] for _ in range(args.repeats)]
        r_txt = [timed(lambda: stream(f"ark:{txt}"))[0] for _ in range(args.repeats)]
        for name, ts in (("write_binary_gz", w_bin), ("write_text_gz", w_txt), ("read_binary_gz", r_bin),
                         ("read_binary_gunzip_pipe", r_pipe), ("read_text_gz", r_txt)):
            med = statistics.median(ts)
            res[name] = {"median_s": round(med, 4), "lattices_per_s": round(args.utts / med, 1),
                         "arcs_per_s": round(n_arcs / med)}
        res["peak_mb_streaming"] = round(peak_mb(lambda: stream(f"ark:{gz}")), 2)
        res["peak_mb_load_all"] = round(peak_mb(lambda: dict(read_lattices(f"ark:{gz}"))), 2)
        res["load_all_over_streaming"] = round(res["peak_mb_load_all"] / res["peak_mb_streaming"], 2)
        res["read_text_over_binary"] = round(res["read_text_gz"]["median_s"] / res["read_binary_gz"]["median_s"], 2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
