#!/usr/bin/env python3
"""Switchboard recipe, stage 5: the results table from the JSON files that stages 1-4 left.

    local/results.py --lm lm=exp/lm --lm lm_admm4=exp/lm_admm4 ... --decode decode_eval2000_sw1_fsh_fg \\
        [--rescore-dir exp/rescore] [--methods "nbest lattice"] [--nbest 20] [--weight 0.8] [--out exp]

Reads, per LM, ``ppl_{valid,test}.json`` (stage 1, full precision) or ``results.json`` (stage 2, quantized:
bits, size, compression, perplexities); per decode dir, ``<rescore-dir>/firstpass_<decode>/`` and
``<rescore-dir>/<lm>_<method>_<decode>/`` with ``scoring/hub5_summary.json`` (Hub5 WER per subset, stage 4)
and ``scoring_kaldi/sweep.json`` (Kaldi-style best WER). Writes ``<out>/results.json``, ``<out>/results.md``
and ``<out>/results_wer_vs_size.png``. A missing file leaves its cells empty ('-'); a corrupt one is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from asr_lm_quant.atomic import atomic_open, atomic_path
from asr_lm_quant.errors import InputError
from asr_lm_quant.report.collect import fp32_size_mb, read_json

SUBSETS = ("total", "swbd", "callhm")
# Kaldi's egs/swbd/s5c/local/pytorchnn/run_nnlm.sh on tdnn7q_sp, eval2000 (total, swbd, callhm).
KALDI_REFERENCE = [("4-gram sw1_fsh_fg, first pass", (12.8, 8.6, 17.0)),
                   ("LSTM LM, 20-best", (10.9, 7.1, 14.6)),
                   ("Transformer LM, 20-best", (10.8, 7.2, 14.4)),
                   ("Transformer LM, lattice", (10.6, 6.8, 14.4))]


def lm_row(name: str, model_dir: Path) -> dict:
    q = read_json(model_dir / "results.json")
    if q is not None:  # a quantized system of stage 2
        row = {"lm": name, "dir": str(model_dir), "method": q.get("method"), "bits": q.get("bits"),
               "avg_bits": q.get("avg_bits"), "size_mb": q.get("size_mb"), "compression": q.get("compression"),
               "valid_ppl": q.get("valid_ppl"), "test_ppl": q.get("test_ppl")}
        if q.get("fp32_mb") and q.get("size_mb"):
            row["fp32_mb"] = q["fp32_mb"]
        return row
    row = {"lm": name, "dir": str(model_dir), "method": "fp", "bits": 32, "avg_bits": 32.0,
           "size_mb": fp32_size_mb(model_dir), "compression": 1.0}
    for split in ("valid", "test"):
        p = read_json(model_dir / f"ppl_{split}.json")
        row[f"{split}_ppl"] = p.get("ppl") if p else None
    return row


def scores(score_dir: Path) -> dict | None:
    """Hub5 WER per subset (with its LMWT/penalty) and the Kaldi-style best WER of one scored decode dir."""
    hub5 = read_json(score_dir / "scoring" / "hub5_summary.json")
    kaldi = read_json(score_dir / "scoring_kaldi" / "sweep.json")
    if hub5 is None and kaldi is None:
        return None
    out: dict = {"dir": str(score_dir)}
    if hub5 is not None:
        try:
            out["hub5"] = {sub: {k: v[k] for k in ("wer", "lmwt", "wip")} for sub, v in hub5["subsets"].items()}
        except (KeyError, TypeError, AttributeError):
            raise InputError(score_dir / "scoring" / "hub5_summary.json", "expected 'subsets' with wer, lmwt, "
                                                                           "wip per subset") from None
    if kaldi is not None:
        try:
            b = kaldi["best"]
            out["kaldi"] = {"wer": b["wer"], "lmwt": b["lmwt"], "wip": b["wip"], "best_wer": b["best_wer"]}
        except (KeyError, TypeError):
            raise InputError(score_dir / "scoring_kaldi" / "sweep.json", "expected a 'best' entry") from None
    return out


def collect(lms: list[tuple[str, Path]], decodes: list[str], rescore_dir: Path, methods: list[str],
            settings: dict) -> dict:
    res = {"settings": settings, "lms": [lm_row(n, d) for n, d in lms], "decodes": {}}
    for dec in decodes:
        entry = {"first_pass": scores(rescore_dir / f"firstpass_{dec}"), "rescored": {}}
        for name, _ in lms:
            entry["rescored"][name] = {m: scores(rescore_dir / f"{name}_{m}_{dec}") for m in methods}
        res["decodes"][dec] = entry
    return res


def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


def _bits(row):
    if row["method"] == "fp":
        return "32"
    if row.get("bits") is not None:
        return str(row["bits"])
    return f"mixed {_f(row.get('avg_bits'), '.2f')}"


def _subsets(entry) -> list[str]:
    """Hub5 subsets of a decode dir in scoring order (eval2000: total, swbd, callhm; rt03: total, swbd, fsh)."""
    found = []
    for s in [entry["first_pass"]] + [s for per in entry["rescored"].values() for s in per.values()]:
        for sub in (s or {}).get("hub5", {}):
            if sub not in found:
                found.append(sub)
    return found or list(SUBSETS)


def _wers(s, subsets):
    h = (s or {}).get("hub5", {})
    kaldi = _f(s["kaldi"]["wer"], ".2f") if s and "kaldi" in s else "-"
    return [_f(h.get(sub, {}).get("wer"), ".1f") for sub in subsets] + [kaldi]


def markdown(res: dict) -> str:
    st = res["settings"]
    names = {"nbest": f"{st.get('nbest', 'N')}-best", "lattice": "lattice"}
    out = ["# Switchboard: Transformer LMs, full precision and quantized", "",
           f"N-best and lattice rescoring with NN LM weight {st.get('weight')} "
           f"(new graph cost = graph - ngram + w nn + (1 - w) ngram). WER by Hub5 scoring (sclite/hubscr, GLM), "
           "best LM weight and penalty chosen per subset as Kaldi does; 'Kaldi' is the best WER of the "
           "Kaldi-style sweep over the set's `text`.", ""]
    out += ["## Language models", "", "| LM | method | bits | size MB | compression | valid ppl | test ppl |",
            "|---|---|---|---|---|---|---|"]
    for r in res["lms"]:
        out.append(f"| {r['lm']} | {r['method']} | {_bits(r)} | {_f(r.get('size_mb'), '.3f')} | "
                   f"{_f(r.get('compression'), '.1f')}x | {_f(r.get('valid_ppl'), '.2f')} | "
                   f"{_f(r.get('test_ppl'), '.2f')} |")
    for dec, entry in res["decodes"].items():
        subs = _subsets(entry)
        out += ["", f"## WER: {dec}", "",
                "| LM | bits | size MB | rescoring | " + " | ".join(subs) + " | Kaldi |",
                "|---|---|---|---|" + "---|" * (len(subs) + 1)]
        out.append("| first pass (n-gram) | - | - | - | " + " | ".join(_wers(entry["first_pass"], subs)) + " |")
        for r in res["lms"]:
            for m, s in entry["rescored"][r["lm"]].items():
                out.append(f"| {r['lm']} | {_bits(r)} | {_f(r.get('size_mb'), '.3f')} | {names.get(m, m)} | "
                           + " | ".join(_wers(s, subs)) + " |")
    if any(d.startswith("decode_eval2000") for d in res["decodes"]):
        out += ["", "Kaldi's published eval2000 WERs for `tdnn7q_sp` (`local/pytorchnn/run_nnlm.sh`), for comparison:",
                "", "| system | total | swbd | callhm |", "|---|---|---|---|"]
        out += [f"| {n} | {t} | {s} | {c} |" for n, (t, s, c) in KALDI_REFERENCE]
    return "\n".join(out) + "\n"


def plot(res: dict, path: Path) -> bool:
    """Hub5 total WER against model size, one line per rescoring method and decode dir."""
    sizes = {r["lm"]: r.get("size_mb") for r in res["lms"]}
    series = []
    for dec, entry in res["decodes"].items():
        for m in res["settings"].get("methods", []):
            pts = sorted((sizes[lm], s[m]["hub5"]["total"]["wer"]) for lm, s in entry["rescored"].items()
                         if sizes.get(lm) and s.get(m) and "hub5" in s[m] and "total" in s[m]["hub5"])
            if pts:
                series.append((f"{m} ({dec})", pts))
    if not series:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for label, pts in series:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    for dec, entry in res["decodes"].items():
        fp = entry["first_pass"]
        if fp and "hub5" in fp and "total" in fp["hub5"]:
            ax.axhline(fp["hub5"]["total"]["wer"], ls="--", color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("NN LM size (MB)")
    ax.set_ylabel("WER % (Hub5, total)")
    ax.set_title("Rescoring WER vs LM size (dashed: first pass)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm", action="append", default=[], metavar="NAME=DIR", help="an LM (repeat)")
    p.add_argument("--decode", action="append", default=[], metavar="NAME", help="a decode dir name (repeat)")
    p.add_argument("--rescore-dir", default="exp/rescore")
    p.add_argument("--methods", default="nbest lattice", help="rescoring methods, space separated")
    p.add_argument("--nbest", type=int, default=20)
    p.add_argument("--weight", type=float, default=0.8)
    p.add_argument("--out", default="exp")
    args = p.parse_args(argv)
    try:
        lms = []
        for spec in args.lm:
            if "=" not in spec:
                raise InputError(None, f"--lm takes NAME=DIR, not {spec!r}", key="--lm")
            n, d = spec.split("=", 1)
            lms.append((n, Path(d)))
        methods = args.methods.split()
        res = collect(lms, args.decode, Path(args.rescore_dir), methods,
                      {"nbest": args.nbest, "weight": args.weight, "methods": methods})
    except InputError as e:
        print(f"{sys.argv[0]}: error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "results.json") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    with atomic_open(out / "results.md") as f:
        f.write(markdown(res))
    plot(res, out / "results_wer_vs_size.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
