"""The results table (markdown) and its JSON, from :func:`~.collect.collect`'s dict."""

from __future__ import annotations

from asr_lm_quant.report.layout import Layout
from asr_lm_quant.report.significance import significance_markdown


def _f(x, fmt, suffix=""):
    return "-" if x is None else format(x, fmt) + suffix


def results_markdown(res: dict, layout: Layout, *, header: str = "") -> str:
    fp = res["first_pass"]
    tuning = fp["first_pass"]
    ev = res.get("oracle_eval", {})
    lines = []
    if header:
        lines += [header, ""]
    n = ev.get("n")
    lines += [
        "WER (%) on the **eval half** of the test utterances"
        + (f" ({ev.get('utterances')} utterances, {ev.get('ref_words')} words)" if ev else "")
        + "; the LM interpolation weight, the LM weight (LMWT) and the insertion penalty were tuned on the "
        "**dev half**.",
        "",
        "| system | model | method | bits | size MB | compression | sensitivity s | test ppl | WER 1st pass | "
        "WER N-best | WER lattice | oracle WER |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {layout.first_pass.label} (first pass) | {layout.first_pass.model} | - | - | "
        f"{_f(fp.get('arpa_mb'), '.1f')} (ARPA) | - | - | "
        f"{_f(fp.get('test_ppl'), '.1f')} | {_f(fp.get('wer_first_pass'), '.2f')} | - | - | "
        f"{_f(fp.get('nbest_oracle_wer'), '.2f')} ({n}-best), {_f(fp.get('lattice_oracle_wer'), '.2f')} (lattice) |",
    ]
    for s in res["systems"]:
        bits = s.get("avg_bits", s.get("bits"))
        lines.append(
            f"| {s['name']} | {s.get('model', '-')} | {s.get('method', '-')} | {_f(bits, '.2f')} | "
            f"{_f(s.get('size_mb'), '.3f')} | {_f(s.get('compression'), '.1f', 'x')} | "
            f"{_f(s.get('sensitivity_seconds'), '.1f')} | {_f(s.get('test_ppl'), '.1f')} | "
            f"{_f(fp.get('wer_first_pass'), '.2f')} | "
            f"{_f(s.get('wer_nbest'), '.2f')} | {_f(s.get('wer_lattice'), '.2f')} | "
            f"{_f(fp.get('nbest_oracle_wer'), '.2f')} |")
    lines += ["", f"First pass chosen on dev: LMWT {tuning['chosen']['lmwt']:g}, penalty "
                  f"{tuning['chosen']['wip']:g} (dev WER {tuning['dev_wer']:.2f})."]
    chosen = [f"{s['name']} {m}: w={s[f'{m}_tuning']['chosen']['weight']}, LMWT "
              f"{s[f'{m}_tuning']['chosen']['lmwt']:g}"
              for s in res["systems"] for m in ("nbest", "lattice") if f"{m}_tuning" in s]
    if chosen:
        lines.append("Rescoring settings chosen on dev: " + "; ".join(chosen) + ".")
    lines += significance_markdown(res, layout)
    return "\n".join(lines) + "\n"
