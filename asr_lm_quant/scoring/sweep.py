"""Kaldi-style scoring sweep (``steps/scoring/score_kaldi_wer.sh``): LM weight x word insertion penalty.

For each LMWT and penalty the hypotheses go to ``scoring_kaldi/penalty_$wip/$lmwt.txt``, the compute-wer
report to ``<decode-dir>/wer_$lmwt_$wip`` and the lowest WER line, followed by the file it came from, to
``scoring_kaldi/best_wer``; ``scoring_kaldi/wer_details/`` gets ``lmwt``, ``wip``, ``per_utt``,
``per_spk`` and ``ops`` for the best setting. Hypotheses stream in one utterance at a time (each with
its words for every setting), so memory stays at one hypothesis file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.cli_args import number_strings
from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring import details
from asr_lm_quant.scoring.filters import command_filter
from asr_lm_quant.scoring.textfile import format_text, read_text, read_utt2spk
from asr_lm_quant.scoring.tuning import first_lowest
from asr_lm_quant.scoring.wer import WerResult, kaldi_percent, score_texts

log = logging.getLogger(__name__)

DEFAULT_WIPS = ("0.0", "0.5", "1.0")


@dataclass(frozen=True, order=True)
class Setting:
    """One point of the sweep; ``wip`` keeps the spelling the user gave (it names files: ``wer_10_0.5``)."""
    lmwt: float
    wip: str

    @property
    def penalty(self) -> float:
        return float(self.wip)

    @property
    def lmwt_name(self) -> str:
        return format_lmwt(self.lmwt)

    @property
    def name(self) -> str:
        return f"{self.lmwt_name}_{self.wip}"


def format_lmwt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def parse_wips(spec) -> list[str]:
    """``"0.0,0.5,1.0"`` or ``"0.0 0.5 1.0"`` or a list -> the penalty strings, each checked to be a number."""
    try:
        return number_strings(spec if isinstance(spec, str) else " ".join(str(s) for s in spec))
    except ArgumentTypeError as e:
        raise InputError(None, f"word insertion penalties: {e}") from None


def make_settings(min_lmwt=7, max_lmwt=17, wips=DEFAULT_WIPS, lmwts=None) -> list[Setting]:
    """Settings in Kaldi's order: penalties outer, LM weights inner (this order breaks ties in best_wer)."""
    if lmwts is None:
        if int(min_lmwt) > int(max_lmwt):
            raise InputError(None, f"--min-lmwt {min_lmwt} is above --max-lmwt {max_lmwt}")
        lmwts = range(int(min_lmwt), int(max_lmwt) + 1)
    for w in lmwts:
        if not float(w) > 0:
            raise InputError(None, f"LM weight {w} must be positive")
    return [Setting(float(l), w) for w in parse_wips(wips) for l in lmwts]


def compute_wer_cmdline(decode_dir) -> str:
    # What Kaldi tools print first (their command line, each argument followed by a space).
    return f"compute-wer --text --mode=present ark:{decode_dir}/scoring_kaldi/test_filt.txt ark,p:- "


def select_best(results: dict[Setting, WerResult], settings: list[Setting]) -> Setting:
    """The first setting, in sweep order, with the lowest WER as printed (two decimals), as best_wer.sh."""
    return first_lowest(settings, lambda s: float(kaldi_percent(results[s].errors, results[s].ref_words)))


def score_sweep(ref: dict[str, list[str]], hyps: Iterable[tuple[str, dict[Setting, list[str]]]],
                settings: list[Setting], decode_dir, *, utt2spk: dict[str, str] | None = None,
                word_filter: Callable[[list[str]], list[str]] | None = None, hyp_filter_cmd: str | None = None,
                test_filt_text: str | None = None, stats: bool = True, plot: bool = True,
                progress=None) -> dict:
    """Write the sweep's files under ``decode_dir`` and return its summary (also in ``scoring_kaldi/sweep.json``).

    ``hyps`` yields ``(utt_id, {setting: words})``. ``word_filter`` edits each hypothesis in Python;
    ``hyp_filter_cmd`` is a shell filter run over each hypothesis file (Kaldi's ``local/wer_hyp_filter``).
    ``test_filt_text`` is the (already filtered) reference text as written to ``test_filt.txt``.
    """
    decode_dir_str = str(decode_dir)
    decode_dir = Path(decode_dir)
    sk = decode_dir / "scoring_kaldi"
    # Work beside scoring_kaldi/, which is made only once everything is computed: a failure leaves none behind.
    made = not decode_dir.exists()  # an output dir for hypothesis texts may be new: removed again on failure
    decode_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".scoring_kaldi.", dir=decode_dir))
    done = False
    try:
        seen = _write_hypotheses(hyps, settings, tmp, decode_dir, word_filter, progress)
        n = len(seen)
        log.info("best paths of %d utterances for %d settings", n, len(settings))
        # Kaldi's compute-wer --mode=present scores the utterances both sides have; with none in common it
        # prints %WER -nan. That is a mismatch of data dir and decode dir, not a result.
        if not seen & set(ref):
            example = next(iter(seen), None)
            raise InputError(decode_dir, f"none of its {n} utterances is in the reference text ({len(ref)} "
                                         f"utterances)" + (f", e.g. {example!r}" if example else "")
                                         + ": is this the data dir the decode dir was made from?")
        if len(seen & set(ref)) < len(seen):
            log.warning("%d of %d hypothesis utterances have no reference and are not scored",
                        len(seen - set(ref)), len(seen))

        if hyp_filter_cmd:
            for s in settings:
                raw = tmp / f"{s.name}.txt"
                command_filter(hyp_filter_cmd, raw, tmp / f"{s.name}.filt")
                os.replace(tmp / f"{s.name}.filt", raw)

        results: dict[Setting, WerResult] = {}
        for s in settings:
            results[s] = score_texts(ref, read_text(tmp / f"{s.name}.txt"), mode="present")
        best = select_best(results, settings)
        best_res = score_texts(ref, read_text(tmp / f"{best.name}.txt"), mode="present", align=True)

        # Everything is computed; now move it into place.
        sk.mkdir(exist_ok=True)
        if test_filt_text is not None:
            with atomic_open(sk / "test_filt.txt") as f:
                f.write(test_filt_text)
        _place_settings(results, tmp, decode_dir_str)
        best_line = f"{results[best].wer_line()} {decode_dir_str}/wer_{best.name}"
        with atomic_open(sk / "best_wer") as f:
            f.write(best_line + "\n")
        if stats:
            write_details(sk / "wer_details", best_res, best, utt2spk)
        summary = sweep_summary(results, settings, best, best_line)
        with atomic_open(sk / "sweep.json") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        with atomic_open(sk / "sweep.md") as f:
            f.write(sweep_markdown(summary))
        if plot:
            from asr_lm_quant.scoring.plots import plot_sweep
            plot_sweep(summary, sk / "wer_vs_lmwt.png", title=f"WER sweep: {decode_dir_str}")
        done = True
        return summary
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not done:
            shutil.rmtree(decode_dir, ignore_errors=True)


def _write_hypotheses(hyps, settings, tmp: Path, decode_dir, word_filter, progress) -> set:
    """Each setting's hypotheses into ``tmp/<setting>.txt``, one utterance at a time; returns the utterances."""
    handles = {s: open(tmp / f"{s.name}.txt", "w", encoding="utf-8") for s in settings}
    seen = set()
    try:
        for utt, per_setting in hyps:
            if utt in seen:
                raise InputError(decode_dir, "utterance appears twice in the hypotheses", key=utt)
            seen.add(utt)
            for s in settings:
                words = per_setting[s]
                if word_filter is not None:
                    words = word_filter(words)
                handles[s].write(format_text({utt: words}))
            if progress is not None:
                progress.update(1)
    finally:
        for h in handles.values():
            h.close()
    return seen


def _place_settings(results: dict, tmp: Path, decode_dir: str) -> None:
    """Each setting's hypotheses to ``scoring_kaldi/penalty_<wip>/<lmwt>.txt``, its report to ``wer_<lmwt>_<wip>``."""
    sk = Path(decode_dir) / "scoring_kaldi"
    for s, res in results.items():
        pdir = sk / f"penalty_{s.wip}"
        (pdir / "log").mkdir(parents=True, exist_ok=True)
        os.replace(tmp / f"{s.name}.txt", pdir / f"{s.lmwt_name}.txt")
        with atomic_open(Path(decode_dir) / f"wer_{s.name}") as f:
            f.write(compute_wer_cmdline(decode_dir) + "\n" + res.kaldi_report())


def write_details(out: Path, res: WerResult, best: Setting, utt2spk: dict[str, str] | None):
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "lmwt") as f:
        f.write(best.lmwt_name + "\n")
    with atomic_open(out / "wip") as f:
        f.write(best.wip + "\n")
    with atomic_open(out / "per_utt") as f:
        f.write(details.per_utt_text(res))
    # Kaldi's scoring needs no utt2spk; per_spk is written when it covers every scored utterance.
    no_speaker = [k for k in res.utts if k not in utt2spk] if utt2spk is not None else []
    if no_speaker:
        log.warning("utt2spk has no speaker for %d of %d scored utterances (e.g. %s): wer_details/per_spk is not "
                    "written", len(no_speaker), len(res.utts), no_speaker[0])
    elif utt2spk is not None:
        with atomic_open(out / "per_spk") as f:
            f.write(details.per_spk_text(res, utt2spk))
    with atomic_open(out / "ops") as f:
        f.write(details.ops_text(res))


def sweep_summary(results: dict[Setting, WerResult], settings: list[Setting], best: Setting,
                  best_line: str) -> dict:
    return {
        "settings": [{"lmwt": s.lmwt, "wip": s.wip, **results[s].to_dict()} for s in settings],
        "best": {"lmwt": best.lmwt, "wip": best.wip, **results[best].to_dict(), "best_wer": best_line},
    }


def sweep_markdown(summary: dict) -> str:
    """A table: one row per LM weight, one column per penalty, the best cell in bold."""
    wips = list(dict.fromkeys(r["wip"] for r in summary["settings"]))
    lmwts = sorted(set(r["lmwt"] for r in summary["settings"]))
    cell = {(r["lmwt"], r["wip"]): r for r in summary["settings"]}
    best = (summary["best"]["lmwt"], summary["best"]["wip"])
    lines = ["| LMWT | " + " | ".join(f"WIP {w}" for w in wips) + " |",
             "|---|" + "---|" * len(wips)]
    for l in lmwts:
        row = []
        for w in wips:
            r = cell.get((l, w))
            v = r["wer_line"].split()[1] if r else ""
            row.append(f"**{v}**" if (l, w) == best else v)
        lines.append(f"| {format_lmwt(l)} | " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"Best: `{summary['best']['best_wer']}`")
    return "\n".join(lines) + "\n"


def load_reference(text_path, *, ref_filter_cmd: str | None = None,
                   word_filter: Callable[[list[str]], list[str]] | None = None):
    """``(ref dict, test_filt.txt contents)`` from ``data/text`` after the reference filter."""
    text_path = Path(text_path)
    if ref_filter_cmd:
        with tempfile.TemporaryDirectory() as d:
            command_filter(ref_filter_cmd, text_path, Path(d) / "ref")
            content = (Path(d) / "ref").read_text(encoding="utf-8")
            ref = read_text(Path(d) / "ref")
    else:
        ref = read_text(text_path)
        content = text_path.read_text(encoding="utf-8")
    if word_filter is not None:
        ref = {k: word_filter(v) for k, v in ref.items()}
        content = format_text(ref)
    return ref, content
