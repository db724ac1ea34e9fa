#!/usr/bin/env python3
"""Mini recipe: split the test set in two halves, a tuning half (dev) and a reporting half (eval).

Utterances alternate between the halves in sorted order, so both voices are in both. Writes
<data>_dev and <data>_eval (text, wav.scp, utt2spk, spk2utt) and, for the decode dir, <decode>_dev and
<decode>_eval with the same number of lattice archives and its num_jobs.

  split_halves.py data/test exp/ngram/decode_test
"""

import argparse
import shutil
import sys
from pathlib import Path

from asr_lm_quant.decode.decode_dir import job_block
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import LatticeWriter, read_decode_dir
from asr_lm_quant.kaldi.datadir import read_table

FILES = ("text", "wav.scp", "utt2spk")


def halves(utts):
    utts = sorted(utts, key=str.encode)
    return {"dev": utts[0::2], "eval": utts[1::2]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("decode_dir")
    a = p.parse_args(argv)
    data, dec = Path(a.data), Path(a.decode_dir)
    tables = {f: {k: " ".join(v) for k, v in read_table(data / f, check_sorted=False).items()} for f in FILES}
    parts = halves(tables["text"])
    nj = int((dec / "num_jobs").read_text())
    lats = dict(read_decode_dir(dec))
    for name, utts in parts.items():
        out = data.with_name(f"{data.name}_{name}")
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in FILES:
            with open(tmp / f, "w") as fh:
                for u in utts:
                    fh.write(f"{u} {tables[f][u]}\n")
        spk2utt = {}
        for u in utts:
            spk2utt.setdefault(tables["utt2spk"][u], []).append(u)
        with open(tmp / "spk2utt", "w") as fh:
            for s in sorted(spk2utt, key=str.encode):
                fh.write(f"{s} {' '.join(spk2utt[s])}\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        dout = dec.with_name(f"{dec.name}_{name}")
        dout.mkdir(parents=True, exist_ok=True)
        for job in range(1, nj + 1):
            missing = [u for u in job_block(utts, job, nj) if u not in lats]
            if missing:
                raise InputError(dec, f"no lattice for utterance {missing[0]}", key=missing[0])
            with LatticeWriter(f"ark:| gzip -c > {dout / f'lat.{job}.gz'}") as w:
                for u in job_block(utts, job, nj):
                    w.write(u, lats[u])
        (dout / "num_jobs").write_text(f"{nj}\n")
        print(f"{out}: {len(utts)} utterances; {dout}: {nj} lattice archives")


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"split_halves.py: error: {e}")
