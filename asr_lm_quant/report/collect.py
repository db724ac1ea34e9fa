"""Gather what a recipe's stages wrote under ``exp/`` into one results dict; where they wrote it is the
recipe's :class:`~asr_lm_quant.report.layout.Layout`.

What is read (every file optional except the first pass's tuning; what is missing is simply absent):

- the first pass's ``ppl_{valid,test}.json`` (``asr-lm-quant ngram-ppl``), its tuning result (first-pass
  WER, LMWT/penalty tuned on the dev half, eval half reported), its dev/eval oracle WERs (N-best and
  lattice) and its LMWT sweep on the whole test set;
- each full-precision Transformer's ``ppl_{valid,test}.json`` (``asr-lm-quant ppl``);
- the quantization results: rows of ``asr-lm-quant quant-sweep`` (bits, sizes, compression, perplexities,
  per-group bits, seconds spent choosing the bits of a mixed-precision system);
- ``<rescore>/<system>/{nbest,lattice}.json``: weight/LMWT/penalty tuned on dev, WER on eval. Systems are
  the full-precision ones and ``q_<quant system>``;
- the eval-half per-utterance errors those tuning results name (``eval_per_utt``): significance of each
  system's difference to the first pass and to its full-precision Transformer (``report/significance.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.report.layout import Layout

_WER_COUNTS = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)")


def eval_wer(tuning: dict) -> float:
    """The eval WER as errors over words when the tuning result keeps Kaldi's %WER line: its ``eval_wer`` has 4
    decimals, and rounding that again to 2 can go the other way from Kaldi's own line (16.92497 -> 16.925 ->
    16.93 where Kaldi prints 16.92)."""
    m = _WER_COUNTS.search(tuning.get("eval_wer_line") or "")
    if m and int(m.group(2)) > 0:
        return 100.0 * int(m.group(1)) / int(m.group(2))
    return tuning["eval_wer"]


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None


def fp32_size_mb(model_dir: Path) -> float | None:
    """32-bit size of a full-precision model directory (as the quantization reports count it)."""
    if not (Path(model_dir) / "config.json").exists():
        return None
    from asr_lm_quant.quant.packed import load_any_lm
    from asr_lm_quant.quant.plan import QuantPlan
    model, _ = load_any_lm(model_dir)
    return QuantPlan.uniform(model, 32).size_report(model)["fp32_bytes"] / 1e6


def _model_size(model_dir: Path) -> dict | None:
    mb = fp32_size_mb(model_dir)
    return None if mb is None else {"size_mb": mb, "avg_bits": 32.0, "compression": 1.0}


def collect(exp, layout: Layout) -> dict:
    exp = Path(exp)
    fpl = layout.first_pass
    fp_dir = exp / fpl.dir
    first = read_json(fp_dir / fpl.tuning)
    if first is None:
        raise InputError(fp_dir / fpl.tuning, "missing: run the recipe's first-pass stage first")
    out: dict = {"exp": str(exp)}
    ngram = {"name": fpl.name, "kind": "ngram", "method": fpl.method, "bits": None}
    for split in ("valid", "test"):
        p = read_json(fp_dir / f"ppl_{split}.json")
        if p:
            ngram[f"{split}_ppl"] = p["ppl"]
    arpa = fp_dir / fpl.lm
    if arpa.exists():
        ngram["arpa_mb"] = arpa.stat().st_size / 1e6
    ngram["wer_first_pass"] = eval_wer(first)
    ngram["first_pass"] = first
    for half, oracle in fpl.oracle.items():
        o = read_json(fp_dir / oracle)
        if o:
            out[f"oracle_{half}"] = o
    if "oracle_eval" in out:
        ngram["nbest_oracle_wer"] = out["oracle_eval"]["nbest_oracle_wer"]
        ngram["lattice_oracle_wer"] = out["oracle_eval"]["lattice_oracle_wer"]
    sweep = read_json(fp_dir / fpl.sweep)
    if sweep:
        out["first_pass_sweep"] = sweep
    out["first_pass"] = ngram

    quant_rows = read_json(exp / layout.quant_results) or []
    systems = []
    for name, model in layout.full_precision.items():
        if not (exp / name).exists():
            continue
        row = {"name": name, "model": model, "method": "fp", "bits": 32}
        fp = next((r for r in quant_rows if r.get("method") == "fp" and r.get("model") == model), None)
        if fp:
            row.update({k: fp[k] for k in ("size_mb", "avg_bits", "compression") if k in fp})
        else:
            row.update(_model_size(exp / name) or {})
        for split in ("valid", "test"):
            p = read_json(exp / name / f"ppl_{split}.json")
            if p:
                row[f"{split}_ppl"] = p["ppl"]
            elif fp and fp.get(f"{split}_ppl") is not None:
                row[f"{split}_ppl"] = fp[f"{split}_ppl"]
        systems.append(row)
    for r in quant_rows:
        if r.get("method") == "fp":
            continue
        row = {"name": "q_" + r["name"], "model": r.get("model", "base")}
        for k in ("method", "bits", "avg_bits", "size_mb", "compression", "valid_ppl", "test_ppl", "plan_bits",
                  "sensitivity_seconds"):
            if k in r:
                row[k] = r[k]
        systems.append(row)
    for row in systems:
        for method in ("nbest", "lattice"):
            res = read_json(exp / layout.rescore / row["name"] / f"{method}.json")
            if res:
                row[f"wer_{method}"] = eval_wer(res)
                row[f"{method}_tuning"] = res
    out["systems"] = systems
    from asr_lm_quant.report.significance import significance
    sg = significance(exp, layout, first, systems)
    if sg is not None:
        out["significance"] = sg
    return out
