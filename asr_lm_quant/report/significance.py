"""Which eval-half WER differences of the results table are significant.

Each tuning result (the first pass's, and each system's ``{nbest,lattice}.json``: where, the recipe's layout says)
names its eval-half per-utterance errors at the chosen setting (``eval_per_utt``, Kaldi's per_utt). Every rescoring
system is compared with two baselines on those utterances: the first pass, and the full-precision Transformer of
the same model (the layout's ``full_precision`` system of its model) with the same rescoring method. A quantized
system whose tuning result also has ``at_reference`` (its eval half at the full-precision model's own dev choice of
weight, LMWT and penalty) gets a third comparison, ``full_precision_setting``: at shared settings the difference is
the quantization's alone, without the noise of choosing settings on dev for each system. A system of a larger LM
stored in at most the size of a smaller LM at full precision (the deeper LM compressed to the base LM's size, say)
is also compared with that smaller LM (``smaller_lm``): the paper's claim that a larger LM compressed to a smaller
one's size recognises better.
Results without these files (older runs) simply have no comparisons.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.report.layout import Layout
from asr_lm_quant.scoring import significance as sig

log = logging.getLogger(__name__)

METHODS = ("nbest", "lattice")


def _load(path: Path, name: str, notes: list[str]):
    if not path.exists():
        notes.append(f"{path}: missing, {name} is left out of the significance tests")
        log.warning(notes[-1])
        return None
    return sig.read_per_utt(path, name)


def _compare(base, other, notes, **kw):
    try:
        a, b = sig.check_same_utterances([base, other])
    except InputError as e:
        notes.append(f"{other.name} vs {base.name}: not compared ({e})")
        log.warning(notes[-1])
        return None
    return sig.compare(a, b, **kw)


def significance(exp, layout: Layout, first_pass_tuning: dict, systems: list[dict], *,
                 samples: int = sig.BOOTSTRAP_SAMPLES, seed: int = sig.BOOTSTRAP_SEED) -> dict | None:
    """``{"comparisons": [...], "samples", "seed", "notes"}``, or None when no result names its per_utt file.

    Each comparison is :func:`~asr_lm_quant.scoring.significance.compare`'s dict (A the baseline, B the
    system) plus ``system``, ``method`` and ``baseline`` (``first_pass``, ``full_precision``,
    ``full_precision_setting`` or ``smaller_lm``).
    """
    exp = Path(exp)
    notes: list[str] = []
    first = None
    if first_pass_tuning.get("eval_per_utt"):
        first = _load(exp / layout.first_pass.dir / first_pass_tuning["eval_per_utt"], "first pass", notes)
    per_system: dict[tuple[str, str], sig.SystemErrors] = {}
    at_fp_setting: dict[tuple[str, str], sig.SystemErrors] = {}
    by_name = {s["name"]: s for s in systems}
    for s in systems:
        for m in METHODS:
            tuning = s.get(f"{m}_tuning") or {}
            at_ref = tuning.get("at_reference") or {}
            fp_tuning = by_name.get(layout.full_precision_system(s.get("model")), {}).get(f"{m}_tuning") or {}
            if at_ref and at_ref.get("chosen") != fp_tuning.get("chosen"):
                notes.append(f"{s['name']} {m}: scored at settings {at_ref.get('chosen')}, but its full-precision "
                             f"LM now chooses {fp_tuning.get('chosen')}: re-run the tuning (stage 5)")
                log.warning(notes[-1])
                at_ref = {}
            for key, store, label in ((tuning.get("eval_per_utt"), per_system, ""),
                                      (at_ref.get("eval_per_utt"), at_fp_setting, " at full-precision settings")):
                if key:
                    loaded = _load(exp / layout.rescore / s["name"] / key, f"{s['name']} {m}{label}", notes)
                    if loaded is not None:
                        store[(s["name"], m)] = loaded
    if first is None and not per_system:
        return None if not notes else {"comparisons": [], "samples": samples, "seed": seed, "notes": notes}
    kw = {"samples": samples, "seed": seed}
    comparisons = []
    for s in systems:
        for m in METHODS:
            mine = per_system.get((s["name"], m))
            if mine is None:
                continue
            fp = layout.full_precision_system(s.get("model"))
            fp_errors = per_system.get((fp, m)) if fp != s["name"] else None
            for baseline, base, other in (("first_pass", first, mine),
                                          ("full_precision", fp_errors, mine),
                                          ("full_precision_setting", fp_errors, at_fp_setting.get((s["name"], m)))):
                if base is None or other is None:
                    continue
                c = _compare(base, other, notes, **kw)
                if c is not None:
                    comparisons.append({"system": s["name"], "method": m, "baseline": baseline,
                                        "baseline_system": "first pass" if baseline == "first_pass" else fp, **c})
    for s, f in _size_matched(systems, layout):
        for m in METHODS:
            base, other = per_system.get((f["name"], m)), per_system.get((s["name"], m))
            if base is not None and other is not None:
                c = _compare(base, other, notes, **kw)
                if c is not None:
                    comparisons.append({"system": s["name"], "method": m, "baseline": "smaller_lm",
                                        "baseline_system": f["name"], "size_mb": s["size_mb"],
                                        "baseline_size_mb": f["size_mb"], **c})
    return {"comparisons": comparisons, "samples": samples, "seed": seed, "notes": notes}


def _size_matched(systems: list[dict], layout: Layout):
    """(system, smaller full-precision LM) pairs: a system of a larger LM (its own full-precision LM is bigger
    than that one) that is stored in at most the smaller LM's full-precision size."""
    fp = {s["model"]: s for s in systems if s.get("method") == "fp"
          and s["name"] == layout.full_precision_system(s.get("model")) and s.get("size_mb")}
    for s in systems:
        own = fp.get(s.get("model"))
        if own is None or s is own or not s.get("size_mb"):
            continue
        for f in fp.values():
            if f is not own and f["size_mb"] < own["size_mb"] and s["size_mb"] <= f["size_mb"]:
                yield s, f


def _full_precision_names(layout: Layout) -> str:
    """``lm for base-model systems, lm_deep for deep ones``."""
    return ", ".join(f"{s} for {m}-model systems" if i == 0 else f"{s} for {m} ones"
                     for i, (s, m) in enumerate(layout.full_precision.items()))


def _cell(c: dict | None) -> list[str]:
    if c is None:
        return ["-", "-", "-"]
    return [f"{c['diff']:+.2f} {sig.marker(c)}", sig.format_p(c["mapsswe"]["p"]), sig.format_ci(c["bootstrap"])]


def significance_markdown(res: dict, layout: Layout) -> list[str]:
    """The companion table: per system and method, the difference to each baseline with p and interval."""
    sg = res.get("significance")
    if not sg or not sg["comparisons"]:
        return []
    by = {(c["system"], c["method"], c["baseline"]): c for c in sg["comparisons"]}
    lines = ["", f"Significance on the eval half: differences in WER points (system minus baseline), MAPSSWE p "
                 f"(matched pairs over utterances, as NIST's sc_stats) and the paired bootstrap's 95% interval "
                 f"({sg['samples']} resamples, seed {sg['seed']}). `**` p < 0.01, `*` p < 0.05, `~` not "
                 f"significant; full precision is {_full_precision_names(layout)}.", "",
             "| system | method | WER | vs first pass | p | 95% CI | vs full precision | p | 95% CI |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in res["systems"]:
        for m in METHODS:
            fp, full = by.get((s["name"], m, "first_pass")), by.get((s["name"], m, "full_precision"))
            if fp is None and full is None:
                continue
            wer = (fp or full)["wer_b"]
            lines.append(f"| {s['name']} | {m} | {wer:.2f} | " + " | ".join(_cell(fp) + _cell(full)) + " |")
    shared = [(s, m, by[(s["name"], m, "full_precision_setting")]) for s in res["systems"] for m in METHODS
              if (s["name"], m, "full_precision_setting") in by]
    if shared:
        lines += ["", "The same comparison with full precision at shared settings: each quantized system rescored "
                      "with its full-precision model's dev choice of interpolation weight, LMWT and insertion "
                      "penalty, so that the difference is the quantization's alone (choosing settings for each "
                      "system on dev moves eval WER by a few tenths when two settings are a word or two apart "
                      "on dev).", "",
                  "| system | method | full precision | WER at its settings | vs full precision | p | 95% CI |",
                  "|---|---|---|---|---|---|---|"]
        for s, m, c in shared:
            lines.append(f"| {s['name']} | {m} | {c['baseline_system']} {c['wer_a']:.2f} | {c['wer_b']:.2f} | "
                         + " | ".join(_cell(c)) + " |")
    matched = [c for c in sg["comparisons"] if c["baseline"] == "smaller_lm"]
    if matched:
        lines += ["", "A larger LM compressed to at most the size of a smaller LM at full precision, against that "
                      "LM (each at its own settings chosen on dev):", "",
                  "| system | method | size MB | smaller LM (size MB) | WER | smaller LM's WER | difference | p | "
                  "95% CI |", "|---|---|---|---|---|---|---|---|---|"]
        for c in matched:
            lines.append(f"| {c['system']} | {c['method']} | {c['size_mb']:.3f} | {c['baseline_system']} "
                         f"({c['baseline_size_mb']:.3f}) | {c['wer_b']:.2f} | {c['wer_a']:.2f} | "
                         + " | ".join(_cell(c)) + " |")
    return lines
