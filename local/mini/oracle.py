#!/usr/bin/env python3
"""Mini recipe: oracle WERs of a decode dir: the best of the N-best (at acoustic scale 0.1, as rescoring
extracts them) and the best path anywhere in the lattice (edit-distance search over the lattice).

  oracle.py --n 20 data/test data/lang/words.txt exp/ngram/decode_test   # writes <decode>/oracle.json
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from kaldialign import edit_distance

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import top_sort
from asr_lm_quant.kaldi.archive import read_decode_dir
from asr_lm_quant.kaldi.datadir import read_text
from asr_lm_quant.kaldi.nbest import nbest_paths
from asr_lm_quant.kaldi.symbols import SymbolTable


def lattice_oracle_errors(lat, ref_ids) -> int:
    """Fewest word errors of any lattice path against ``ref_ids`` (0 labels are epsilon)."""
    lat = top_sort(lat)
    ref = np.asarray(ref_ids, dtype=np.int64)
    n = len(ref) + 1
    ramp = np.arange(n, dtype=np.float64)
    dist = np.full((lat.num_states, n), np.inf)
    dist[lat.start] = ramp  # deleting the first j reference words
    offs = lat.arc_offsets()
    best = np.inf
    for s in range(lat.num_states):
        row = dist[s]
        row = np.minimum.accumulate(row - ramp) + ramp  # deletions inside the state
        dist[s] = row
        if np.isfinite(lat.final_graph[s]) or np.isfinite(lat.final_acoustic[s]):
            best = min(best, row[-1])
        for i in range(offs[s], offs[s + 1]):
            w = int(lat.olabel[i])
            d = int(lat.dst[i])
            if w == 0:
                new = row
            else:
                new = row + 1  # insertion
                new[1:] = np.minimum(new[1:], row[:-1] + (ref != w))
            np.minimum(dist[d], new, out=dist[d])
    return int(best)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("words")
    p.add_argument("decode_dir")
    p.add_argument("--n", type=int, default=20, help="N-best size (default 20)")
    p.add_argument("--acwt", type=float, default=0.1, help="acoustic scale for the N-best (default 0.1)")
    a = p.parse_args(argv)
    ref = read_text(Path(a.data) / "text")
    sym = SymbolTable.load(a.words)
    nb_err = lat_err = one_err = n_words = n_utts = 0
    for key, lat in read_decode_dir(a.decode_dir):
        if key not in ref:
            raise InputError(Path(a.data) / "text", "no reference for this lattice", key=key)
        r = ref[key]
        paths = nbest_paths(lat, a.n, acoustic_scale=a.acwt)
        hyps = [[w for w in sym.words(p.words, key=key)] for p in paths]
        errs = [edit_distance(r, h)["total"] for h in hyps] or [len(r)]
        nb_err += min(errs)
        one_err += errs[0]
        lat_err += lattice_oracle_errors(lat, [sym.word_to_id.get(w, -1) for w in r])
        n_words += len(r)
        n_utts += 1
    if n_utts == 0:
        raise InputError(a.decode_dir, "no lattices")
    res = {"n": a.n, "acwt": a.acwt, "utterances": n_utts, "ref_words": n_words,
           "one_best_wer": 100.0 * one_err / n_words, "nbest_oracle_wer": 100.0 * nb_err / n_words,
           "lattice_oracle_wer": 100.0 * lat_err / n_words}
    with atomic_open(Path(a.decode_dir) / "oracle.json") as f:
        json.dump(res, f, indent=2)
    print(json.dumps(res))


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"oracle.py: error: {e}")
