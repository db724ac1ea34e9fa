"""``decide-nbest``: tune (weight, lm_scale, penalty) on a dev set's n-best lists, apply the best setting to a
test set and write the 1-best texts, the decision, the sweep's table and its plot (see
:mod:`asr_lm_quant.rescore.decide` for the decision rule and the error counts)."""

from __future__ import annotations

import logging
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.rescore.decide import (DEFAULT_LM_SCALES, DEFAULT_PENALTIES, Counts, HypTable, best_setting,
                                         format_weight, normalize_words, subset_masks, sweep)

log = logging.getLogger(__name__)


def decide_nbest(dev, out, *, test=None, dev_ref=None, test_ref=None, weights=(None,),
                 lm_scales=DEFAULT_LM_SCALES, penalties=DEFAULT_PENALTIES, fmt: str = "auto",
                 per_token_costs: str = "none", normalize: str = "none", subsets=(), overwrite: bool = False) -> dict:
    """Decide ``dev`` (and ``test``) n-best files (paths with ``{weight}`` when ``weights`` are given) and write
    ``out``: ``dev/text``, ``test/text``, ``decision.json``, ``sweep.md``, ``sweep.png``. References: Kaldi text
    files, else those the n-best files carry. ``decision.json`` holds the n-best oracle's counts too (per subset,
    the best hypothesis of each utterance) and ``lm_off``: whether the chosen setting leaves the LM out (LM
    scale or weight 0; said on stderr as well). Returns ``{"setting", "dev_wer", "test_wer", "dev_oracle_wer",
    "test_oracle_wer", "lm_off"}``."""
    weights = list(weights)
    for path in (dev, test):
        if path and ("{weight}" in path) != (weights != [None]):
            raise InputError(path, "--weights and a {weight} in the n-best paths go together")
    if test_ref and not test:
        raise InputError(test_ref, "--test-ref without --test")
    names = ["decision.json", "sweep.md", "sweep.png", "dev"] + (["test"] if test else [])
    existing = [n for n in names if (Path(out) / n).exists()]
    if existing and not overwrite:
        raise InputError(out, f"already holds {', '.join(existing)} (give --overwrite to replace it)")

    def tables(pattern):
        return {w: _table(_named(pattern, w), fmt, per_token_costs, normalize) for w in weights}

    dev_tables = tables(dev)
    dev_words = _references(dev_ref, dev, weights, fmt)
    dev_words = {k: normalize_words(v, normalize) for k, v in dev_words.items()}
    dev_counts = {w: Counts.of(t, dev_words, nbest_name=_named(dev, w), ref_name=dev_ref)
                  for w, t in dev_tables.items()}
    rows = sweep(dev_tables, dev_counts, lm_scales, penalties)
    best = best_setting(rows)
    w, s, pen = best["weight"], best["lm_scale"], best["penalty"]
    lm_off = _lm_off(w, s, dev_tables[w])
    decision = {"setting": {"weight": w, "lm_scale": s, "penalty": pen,
                            "kaldi_lmwt": s, "kaldi_word_ins_penalty": pen / s if s else None},
                "lm_off": lm_off is not None, "per_token_costs": per_token_costs, "normalize": normalize, "dev": {},
                "test": None, "oracle": {"dev": {}, "test": None},
                "grid": {"weights": weights, "lm_scales": list(lm_scales), "penalties": list(penalties)}}
    t = dev_tables[w]
    picked = {"dev": (t, t.pick(s, pen))}
    decision["dev"], decision["oracle"]["dev"] = _results(t, dev_counts[w], picked["dev"][1], subsets)
    if test:
        tt = tables(test)[w]
        picked["test"] = (tt, tt.pick(s, pen))
        test_words = _references(test_ref, test, weights, fmt, required=False)
        if test_words:
            c = Counts.of(tt, {k: normalize_words(v, normalize) for k, v in test_words.items()},
                          nbest_name=_named(test, w), ref_name=test_ref)
            decision["test"], decision["oracle"]["test"] = _results(tt, c, picked["test"][1], subsets)
    if lm_off:
        log.warning("decide-nbest: the LM is switched off at the chosen setting (%s)", lm_off)
    _write(out, names, picked, decision, rows, best, overwrite)
    test_res, test_oracle = decision["test"], decision["oracle"]["test"]
    return {"setting": decision["setting"], "dev_wer": decision["dev"]["total"]["wer"],
            "test_wer": test_res["total"]["wer"] if test_res else None,
            "dev_oracle_wer": decision["oracle"]["dev"]["total"]["wer"],
            "test_oracle_wer": test_oracle["total"]["wer"] if test_oracle else None,
            "lm_off": decision["lm_off"]}


def _lm_off(weight, lm_scale, table) -> str | None:
    """What switches the (new) LM off at a setting, or None: lists without LM costs (any LM scale picks the
    same), an LM scale of 0 (no LM cost at all) or an interpolation weight of 0 (none of the rescoring LM)."""
    if not table.lm.any():
        return "the n-best lists have no LM costs"
    if lm_scale == 0:
        return "lm_scale 0"
    if weight == 0:
        return "weight 0"
    return None


def _results(table, counts, rows, subsets):
    """``({subset: counts of the decision}, {subset: counts of the n-best oracle})``."""
    oracle = counts.oracle(table)
    masks = subset_masks(table.utts, subsets)
    return ({name: counts.result(rows, m) for name, m in masks.items()},
            {name: counts.result(oracle, m) for name, m in masks.items()})


def _named(pattern, weight):
    """The n-best file of ``weight`` (``pattern`` with ``{weight}`` filled in)."""
    return pattern if weight is None else pattern.replace("{weight}", format_weight(weight))


def _table(path, fmt, per_token_costs, normalize) -> HypTable:
    from asr_lm_quant.nbest.read import check_per_token, iter_groups
    check_per_token(path, fmt, per_token_costs)
    return HypTable.from_groups(list(iter_groups(path, fmt)), per_token_costs, normalize)


def _references(text, nbest_pattern, weights, fmt="auto", required=True) -> dict:
    """References from a Kaldi text file, else from the n-best file itself where its format carries them."""
    from asr_lm_quant.nbest.formats import all_formats
    from asr_lm_quant.nbest.read import read_references
    from asr_lm_quant.scoring.textfile import read_text
    if text:
        return read_text(text)
    path = nbest_pattern if weights == [None] else nbest_pattern.replace("{weight}", format_weight(weights[0]))
    refs = read_references(path, fmt)
    if not refs and required:
        carry = ", ".join(n for n, f in all_formats().items() if f.references)
        raise InputError(path, "no references: give them as Kaldi text (--dev-ref), or in an n-best format that "
                               f"carries them ({carry})")
    return refs


def _write(out, names, picked, decision, rows, best, overwrite) -> None:
    from asr_lm_quant.scoring.plots import plot_sweep
    from asr_lm_quant.scoring.textfile import format_text
    from asr_lm_quant.text.outdir import staged_output, write_json
    with staged_output(out, names, overwrite=overwrite) as stage:
        for name, (tab, rws) in picked.items():
            (stage / name).mkdir()
            (stage / name / "text").write_text(format_text({tab.utts[u]: tab.raw[r] for u, r in enumerate(rws)}),
                                               encoding="utf-8")  # the recogniser's words, not normalised
        write_json(stage / "decision.json", {**decision, "sweep": rows})
        (stage / "sweep.md").write_text(sweep_markdown(rows, best), encoding="utf-8")
        weighted = best["weight"] is not None
        plot_rows = [{"lmwt": r["lm_scale"], "wip": f"{r['penalty']:g}" + (f", w {r['weight']:g}"
                      if r["weight"] is not None else ""), "wer": r["wer"]} for r in rows]
        plot_sweep({"settings": plot_rows, "best": {"lmwt": best["lm_scale"], "wer": best["wer"]}},
                   stage / "sweep.png",
                   title="dev WER by LM scale (lines: penalty" + (", weight" if weighted else "") + ")")


def sweep_markdown(rows, best) -> str:
    lines = ["| weight | lm_scale | penalty | WER | errors | ins | del | sub |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " **(best)**" if r is best else ""
        w = "-" if r["weight"] is None else f"{r['weight']:g}"
        lines.append(f"| {w} | {r['lm_scale']:g} | {r['penalty']:g} | {r['wer']:.2f}{mark} | {r['errors']} | "
                     f"{r['ins']} | {r['del']} | {r['sub']} |")
    return "\n".join(lines) + "\n"
