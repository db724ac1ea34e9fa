#!/usr/bin/env python3
"""Mini recipe: choose the LM interpolation weight, LM weight (LMWT) and insertion penalty on the dev
half and report the eval half at exactly that choice.

Each WEIGHT=DEV_DIR,EVAL_DIR names two scored decode dirs (steps/score_kaldi.sh left
scoring_kaldi/sweep.json in each); WEIGHT may be 'none' (the first pass). Writes --out JSON:
{"chosen": {"weight", "lmwt", "wip"}, "dev_wer", "eval_wer", "eval_oracle_setting_wer",
 "dev_wer_by_weight": {...}, "eval_wer_by_weight": {...}, "eval_ref_words"}.

  tune.py --out exp/rescore/lm/nbest.json 0.5=dirA_dev,dirA_eval 0.7=dirB_dev,dirB_eval
"""

import argparse
import json
import sys
from pathlib import Path

from asr_lm_quant.atomic import atomic_open


def load_sweep(decode_dir) -> dict:
    path = Path(decode_dir) / "scoring_kaldi" / "sweep.json"
    if not path.exists():
        sys.exit(f"tune.py: error: {path} does not exist (score {decode_dir} first)")
    return json.loads(path.read_text())


def setting_key(s):
    return (float(s["lmwt"]), float(s["wip"]))


def tune(pairs: dict) -> dict:
    """``pairs``: weight -> (dev_dir, eval_dir)."""
    best = None
    dev_by_w, eval_by_w = {}, {}
    for w, (dev, ev) in pairs.items():
        dsw, esw = load_sweep(dev), load_sweep(ev)
        eval_settings = {setting_key(s): s for s in esw["settings"]}
        dev_best = min(dsw["settings"], key=lambda s: (s["wer"], setting_key(s)))
        dev_by_w[w] = dev_best["wer"]
        eval_by_w[w] = eval_settings[setting_key(dev_best)]["wer"]
        if best is None or dev_best["wer"] < best[0]["wer"]:
            best = (dev_best, w, eval_settings[setting_key(dev_best)], esw)
    dev_best, w, ev, esw = best
    return {"chosen": {"weight": w, "lmwt": float(dev_best["lmwt"]), "wip": float(dev_best["wip"])},
            "dev_wer": dev_best["wer"], "eval_wer": ev["wer"], "eval_wer_line": ev.get("wer_line"),
            "eval_ref_words": ev.get("ref_words"), "dev_ref_words": dev_best.get("ref_words"),
            "eval_oracle_setting_wer": esw["best"]["wer"],
            "dev_wer_by_weight": dev_by_w, "eval_wer_by_weight": eval_by_w}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("pairs", nargs="+", metavar="WEIGHT=DEV_DIR,EVAL_DIR")
    a = p.parse_args(argv)
    pairs = {}
    for item in a.pairs:
        w, _, dirs = item.partition("=")
        dev, _, ev = dirs.partition(",")
        if not dev or not ev:
            sys.exit(f"tune.py: error: expected WEIGHT=DEV_DIR,EVAL_DIR, got {item!r}")
        pairs[w] = (dev, ev)
    res = tune(pairs)
    with atomic_open(a.out) as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: res[k] for k in ("chosen", "dev_wer", "eval_wer")}))


if __name__ == "__main__":
    main()
