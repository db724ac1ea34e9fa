#!/usr/bin/env python3
"""Mini recipe: choose the LM interpolation weight, LM weight (LMWT) and insertion penalty on the dev
half and report the eval half at exactly that choice.

Each WEIGHT=DEV_DIR,EVAL_DIR names two scored decode dirs (steps/score_kaldi.sh left
scoring_kaldi/sweep.json in each); WEIGHT may be 'none' (the first pass). Writes --out JSON:
{"chosen": {"weight", "lmwt", "wip"}, "dev_wer", "eval_wer", "eval_oracle_setting_wer",
 "dev_wer_by_weight": {...}, "eval_wer_by_weight": {...}, "eval_ref_words", "eval_hyp", "eval_per_utt"}.
Beside it go the eval half's 1-best at the choice (<out>.eval_hyp.txt, a Kaldi text) and its
per-utterance errors (<out>.eval_per_utt, Kaldi's per_utt), which the report's significance tests read.

--reference REF_JSON (another system's output of this script, e.g. the full-precision model's) adds
"at_reference": the eval half at *that* system's dev choice of weight, LMWT and penalty, with its 1-best
and per_utt (<out>.eval_hyp_at_reference.txt, <out>.eval_per_utt_at_reference). Tuning each system on its
own moves eval WER by a few tenths when two settings are a word or two apart on dev; at shared settings
the difference is the model's alone.

  tune.py --out exp/rescore/lm/nbest.json 0.5=dirA_dev,dirA_eval 0.7=dirB_dev,dirB_eval
  tune.py --reference exp/rescore/lm/nbest.json --out exp/rescore/q_ptq-8/nbest.json 0.5=... 0.7=...
"""

import argparse
import json
import sys
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.scoring.tuning import first_lowest


def load_sweep(decode_dir) -> dict:
    path = Path(decode_dir) / "scoring_kaldi" / "sweep.json"
    if not path.exists():
        sys.exit(f"tune.py: error: {path} does not exist (score {decode_dir} first)")
    return json.loads(path.read_text())


def setting_key(s):
    return (float(s["lmwt"]), float(s["wip"]))


def tune(pairs: dict) -> dict:
    """``pairs``: weight -> (dev_dir, eval_dir). Per weight the dev setting with the lowest WER (the smallest
    LMWT, then penalty, among equals); then the weight whose best is lowest (the first given among equals)."""
    per_weight = []
    dev_by_w, eval_by_w = {}, {}
    for w, (dev, ev) in pairs.items():
        dsw, esw = load_sweep(dev), load_sweep(ev)
        eval_settings = {setting_key(s): s for s in esw["settings"]}
        dev_best = first_lowest(sorted(dsw["settings"], key=setting_key), lambda s: s["wer"])
        dev_by_w[w] = dev_best["wer"]
        eval_by_w[w] = eval_settings[setting_key(dev_best)]["wer"]
        per_weight.append((dev_best, w, eval_settings[setting_key(dev_best)], esw, ev))
    dev_best, w, ev, esw, eval_dir = first_lowest(per_weight, lambda b: b[0]["wer"])
    return {"chosen": {"weight": w, "lmwt": float(dev_best["lmwt"]), "wip": float(dev_best["wip"])},
            "dev_wer": dev_best["wer"], "eval_wer": ev["wer"], "eval_wer_line": ev.get("wer_line"),
            "eval_ref_words": ev.get("ref_words"), "dev_ref_words": dev_best.get("ref_words"),
            "eval_oracle_setting_wer": esw["best"]["wer"],
            "dev_wer_by_weight": dev_by_w, "eval_wer_by_weight": eval_by_w,
            "eval_dir": str(eval_dir), "eval_setting": {"lmwt": ev["lmwt"], "wip": ev["wip"]}}


def at_setting(pairs: dict, weight: str, lmwt: float, wip) -> dict:
    """The eval half's sweep entry at one given weight, LMWT and penalty (another system's choice)."""
    if weight not in pairs:
        sys.exit(f"tune.py: error: --reference chose weight {weight}, which is not among the weights given "
                 f"here ({', '.join(pairs)}): rescore with the same weights")
    eval_dir = pairs[weight][1]
    settings = {setting_key(s): s for s in load_sweep(eval_dir)["settings"]}
    ev = settings.get((float(lmwt), float(wip)))
    if ev is None:
        sys.exit(f"tune.py: error: {Path(eval_dir) / 'scoring_kaldi' / 'sweep.json'} has no LMWT {lmwt:g} "
                 f"with penalty {wip} (the --reference choice): score with the same LMWT and penalty ranges")
    return {"eval_wer": ev["wer"], "eval_wer_line": ev.get("wer_line"), "eval_ref_words": ev.get("ref_words"),
            "eval_dir": str(eval_dir), "eval_setting": {"lmwt": ev["lmwt"], "wip": ev["wip"]}}


def eval_one_best(res: dict) -> tuple[Path, Path]:
    """The eval half's 1-best text at ``res``'s setting and the reference it was scored against
    (what steps/score_kaldi.sh left in scoring_kaldi/)."""
    from asr_lm_quant.scoring.sweep import Setting
    sk = Path(res["eval_dir"]) / "scoring_kaldi"
    s = Setting(float(res["eval_setting"]["lmwt"]), str(res["eval_setting"]["wip"]))
    hyp, ref = sk / f"penalty_{s.wip}" / f"{s.lmwt_name}.txt", sk / "test_filt.txt"
    for p in (hyp, ref):
        if not p.exists():
            sys.exit(f"tune.py: error: {p} does not exist (score {res['eval_dir']} first)")
    return hyp, ref


def keep_eval_one_best(res: dict, out: Path, suffix: str = "") -> dict:
    """Write the eval 1-best at ``res``'s setting beside ``out`` and its per-utterance errors; returns the
    names (``eval_hyp``, ``eval_per_utt``, each ending in ``suffix``)."""
    from asr_lm_quant.scoring.details import per_utt_text
    from asr_lm_quant.scoring.textfile import read_text, write_text
    from asr_lm_quant.scoring.wer import score_texts
    hyp_file, ref_file = eval_one_best(res)
    hyp = read_text(hyp_file)
    scored = score_texts(read_text(ref_file), hyp, mode="present", align=True)  # as the sweep scored it
    stem = out.name.removesuffix(".json")
    names = {"eval_hyp": f"{stem}.eval_hyp{suffix}.txt", "eval_per_utt": f"{stem}.eval_per_utt{suffix}"}
    write_text(out.parent / names["eval_hyp"], hyp)
    with atomic_open(out.parent / names["eval_per_utt"]) as f:
        f.write(per_utt_text(scored))
    return names


def read_reference(path: str) -> dict:
    try:
        ref = json.loads(Path(path).read_text())
        chosen = ref["chosen"]
        float(chosen["wip"])  # a number, kept as written
        return {"weight": str(chosen["weight"]), "lmwt": float(chosen["lmwt"]), "wip": chosen["wip"]}
    except OSError as e:
        sys.exit(f"tune.py: error: --reference {path}: {e.strerror} (tune the reference system first)")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        sys.exit(f"tune.py: error: --reference {path}: not a tuning result of this script ({e})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--reference", metavar="REF_JSON",
                   help="also report the eval half at this tuning result's choice (see above)")
    p.add_argument("pairs", nargs="+", metavar="WEIGHT=DEV_DIR,EVAL_DIR")
    a = p.parse_args(argv)
    pairs = {}
    for item in a.pairs:
        w, _, dirs = item.partition("=")
        dev, _, ev = dirs.partition(",")
        if not dev or not ev:
            sys.exit(f"tune.py: error: expected WEIGHT=DEV_DIR,EVAL_DIR, got {item!r}")
        pairs[w] = (dev, ev)
    ref = read_reference(a.reference) if a.reference else None
    res = tune(pairs)
    # Everything is checked before the first file is written.
    at = at_setting(pairs, ref["weight"], ref["lmwt"], ref["wip"]) if ref is not None else None
    for r in (res, at):
        if r is not None:
            eval_one_best(r)
    res.update(keep_eval_one_best(res, Path(a.out)))
    if at is not None:
        at.update(keep_eval_one_best(at, Path(a.out), suffix="_at_reference"))
        res["at_reference"] = {"tuning": str(a.reference), "chosen": ref, **at}
    with atomic_open(a.out) as f:
        json.dump(res, f, indent=2)
    print(json.dumps({k: res[k] for k in ("chosen", "dev_wer", "eval_wer")}))


if __name__ == "__main__":
    main()
