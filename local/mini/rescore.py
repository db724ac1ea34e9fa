#!/usr/bin/env python3
"""Mini recipe, stage 5 for one model and one half of the test set, in one process: N-best and lattice
rescoring of every lattice archive with all the interpolation weights, then the Kaldi scoring sweep of
each result. The same library calls as ``asr-lm-quant rescore-nbest`` / ``rescore-lattice`` and
``steps/score_kaldi.sh``; one process keeps the model and the 3-gram loaded throughout.

Writes <out>/{nbest,lattice}/<half>_w<weight>/{lat.JOB.gz,num_jobs,scoring_kaldi/...}.

  rescore.py --half 1 --weights 0.5,0.7 --n 20 exp/ngram/3gram.arpa exp/lm data/lang/words.txt \\
      data/test exp/ngram/decode_test exp/rescore/lm        # half 1 = dev, 2 = eval
"""

import argparse
import json
import sys
from pathlib import Path

from asr_lm_quant.errors import InputError

HALVES = {1: "dev", 2: "eval"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("arpa")
    p.add_argument("model")
    p.add_argument("words")
    p.add_argument("data", help="the full test data dir; its _dev/_eval halves are used")
    p.add_argument("decode_dir", help="the full first-pass decode dir; its _dev/_eval halves are used")
    p.add_argument("out")
    p.add_argument("--half", type=int, choices=sorted(HALVES), required=True)
    p.add_argument("--weights", default="0.5,0.7,0.9")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--acwt", type=float, default=0.1)
    p.add_argument("--methods", default="nbest,lattice")
    p.add_argument("--bf16", action="store_true")
    a = p.parse_args(argv)

    from asr_lm_quant.kaldi.symbols import SymbolTable
    from asr_lm_quant.ngram.arpa import ArpaLM
    from asr_lm_quant.quant.packed import load_lm_for_inference
    from asr_lm_quant.rescore.lattice import rescore_lattice_job
    from asr_lm_quant.rescore.nbest import rescore_nbest_job
    from asr_lm_quant.rescore.nnscore import NNScorer
    from asr_lm_quant.scoring.kaldi_sweep import sweep_decode_dir

    half = HALVES[a.half]
    data = Path(f"{a.data}_{half}")
    src = Path(f"{a.decode_dir}_{half}")
    nj = int((src / "num_jobs").read_text())
    weights = [float(w) for w in a.weights.split(",")]
    model, vocab = load_lm_for_inference(a.model)  # quantized systems are scored packed
    scorer = NNScorer(model, vocab, bf16=a.bf16)
    old = ArpaLM(a.arpa)
    symbols = SymbolTable.load(a.words)
    for method in a.methods.split(","):
        outs = {w: Path(a.out) / method / f"{half}_w{w:g}" for w in weights}
        for job in range(1, nj + 1):
            lattices = f"ark:gunzip -c {src / f'lat.{job}.gz'} |"
            out_lats = {w: f"ark:| gzip -c > {d / f'lat.{job}.gz'}" for w, d in outs.items()}
            if method == "nbest":
                summary = rescore_nbest_job(scorer=scorer, ngram_lm=old, symbols=symbols, weights=weights,
                                            lattices=lattices, hyps=None, n=a.n, acoustic_scale=a.acwt,
                                            out_lattices=out_lats, out_nbest=None, out_tables=None)
            elif method == "lattice":
                summary = rescore_lattice_job(scorer=scorer, ngram_lm=old, symbols=symbols, weights=weights,
                                              lattices=lattices, out_lattices=out_lats, acoustic_scale=a.acwt,
                                              check=True)  # weight 0 must keep the first pass
            else:
                raise InputError(None, f"--methods: unknown method {method!r}")
            print(f"{method} {half} job {job}: {json.dumps(summary)}", flush=True)
        for w, d in outs.items():
            (d / "num_jobs").write_text(f"{nj}\n")
            s = sweep_decode_dir(data, a.words, d, stats=False, plot=False, progress=False)
            print(f"{method} {half} w={w:g}: {s['best']['best_wer']}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"rescore.py: error: {e}")
