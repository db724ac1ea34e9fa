#!/usr/bin/env python3
"""Mini recipe: one job of the pocketsphinx first pass (see asr_lm_quant.decode.decode_dir).

  decode.py --job 1 --nj 2 data/test exp/ngram/3gram.arpa data/lang/words.txt exp/ngram/decode_test
"""

import argparse
import json
import sys

from asr_lm_quant.decode.decode_dir import decode_job
from asr_lm_quant.errors import InputError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("arpa")
    p.add_argument("words")
    p.add_argument("decode_dir")
    p.add_argument("--job", type=int, required=True)
    p.add_argument("--nj", type=int, required=True)
    p.add_argument("--cache-dir", help="lattice cache (keyed by audio, LM and decoder options)")
    p.add_argument("--lattice-beam", type=float, default=8.0)
    p.add_argument("--graph-beam", type=float, default=16.0)
    p.add_argument("--config", default="{}", help="pocketsphinx options as JSON, e.g. '{\"lw\": 6.5}'")
    a = p.parse_args(argv)
    stats = decode_job(a.data, a.arpa, a.words, a.decode_dir, job=a.job, nj=a.nj, config=json.loads(a.config),
                       cache_dir=a.cache_dir, lattice_beam=a.lattice_beam, graph_beam=a.graph_beam)
    print(json.dumps(stats))


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"decode.py: error: {e}")
