"""``score_kaldi_wer.sh`` end to end: a decode dir of ``lat.*.gz`` (or hypothesis texts) -> WER sweep files."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.bestpath import best_paths
from asr_lm_quant.scoring.filters import WORD_FILTERS, kaldi_recipe_filters
from asr_lm_quant.scoring.mbr import KALDI_MBR_BEAM, mbr_sweep
from asr_lm_quant.scoring.sweep import (DEFAULT_WIPS, Setting, load_reference, make_settings, score_sweep,
                                        write_details)
from asr_lm_quant.scoring.textfile import read_text, read_utt2spk, read_words_txt, words_txt_of
from asr_lm_quant.scoring.wer import WerResult, score_texts

log = logging.getLogger(__name__)


def lattice_files(decode_dir) -> list[Path]:
    """``lat.N.gz`` of a decode dir: ``1..num_jobs`` when ``num_jobs`` exists, else every ``lat.*.gz``."""
    d = Path(decode_dir)
    if (d / "num_jobs").exists():
        from asr_lm_quant.kaldi.archive import decode_dir_jobs
        return decode_dir_jobs(d)
    files = sorted((p for p in d.glob("lat.*.gz") if re.fullmatch(r"lat\.\d+\.gz", p.name)),
                   key=lambda p: int(p.name.split(".")[1]))
    if not files:
        raise InputError(d, "no lat.*.gz in this decode dir")
    return files


def lattice_hyps(files, symbols: dict[int, str], settings: list[Setting], *, kaldi_semantics: bool = True,
                 words_name=None, decode_mbr: bool = False, mbr_beam: float | None = KALDI_MBR_BEAM):
    """``(utt, {setting: words})`` for every lattice of ``files``, one lattice in memory at a time.

    ``kaldi_semantics``: acoustic scaled by 1/LMWT (score_kaldi_wer.sh); otherwise graph scaled by LMWT
    (local/score_sclite.sh). A lattice with no path to a final state gets no hypothesis (as
    lattice-best-path, which skips it). ``decode_mbr``: the MBR hypothesis after ``lattice-prune
    --beam=mbr_beam`` instead of the best path (score_kaldi_wer.sh --decode-mbr true).
    """
    from asr_lm_quant.kaldi.archive import read_lattices
    if kaldi_semantics:
        gs = [1.0] * len(settings)
        ac = [1.0 / s.lmwt for s in settings]
    else:
        gs = [s.lmwt for s in settings]
        ac = [1.0] * len(settings)
    wp = [s.penalty for s in settings]
    for f in files:
        for key, lat in read_lattices(f"ark:{f}"):
            if decode_mbr:
                paths = mbr_sweep(lat, gs, ac, wp, beam=mbr_beam, path=f, key=key)
            else:
                paths = best_paths(lat, gs, ac, wp, path=f, key=key)
            if any(p is None for p in paths):
                log.warning("%s: lattice %s has no successful path; it gets no hypothesis", f, key)
                continue
            out = {}
            for s, p in zip(settings, paths):
                try:
                    out[s] = [symbols[w] for w in p.words]
                except KeyError as e:
                    raise InputError(words_name, f"word id {e.args[0]} of lattice {key} ({f}) is not in the "
                                                 "symbol table", key=key) from None
            yield key, out


def sweep_decode_dir(data_dir, lang_or_words, decode_dir, *, min_lmwt: int = 7, max_lmwt: int = 17,
                     wips=DEFAULT_WIPS, hyp_filter: str = "none", hyp_filter_cmd: str | None = None,
                     ref_filter_cmd: str | None = None, recipe_filters: bool = False, stats: bool = True,
                     plot: bool = True, progress: bool = True, decode_mbr: bool = False,
                     mbr_beam: float | None = KALDI_MBR_BEAM) -> dict:
    """Kaldi's ``steps/scoring/score_kaldi_wer.sh`` on ``decode_dir/lat.*.gz``; returns the summary dict.

    ``{"settings": [{"lmwt", "wip", "wer", "errors", "ref_words", "ins", "del", "sub", ...}, ...],
    "best": {... , "best_wer": "<the best_wer line>"}}``. ``hyp_filter``: ``none`` (Kaldi's default) or
    ``hub5``; ``recipe_filters`` picks up ``local/wer_{hyp,ref,output}_filter`` from the working directory
    as the Kaldi script does. ``decode_mbr``: minimum Bayes risk hypotheses (``--decode-mbr true``:
    ``lattice-prune --beam=mbr_beam | lattice-mbr-decode``) instead of best paths.
    """
    data_dir, decode_dir_p = Path(data_dir), Path(decode_dir)
    words_path = words_txt_of(lang_or_words)
    if recipe_filters:
        r, h = kaldi_recipe_filters()
        ref_filter_cmd = ref_filter_cmd or r
        hyp_filter_cmd = hyp_filter_cmd or h
    settings = make_settings(min_lmwt, max_lmwt, wips)
    files = lattice_files(decode_dir_p)
    ref, ref_content = load_reference(data_dir / "text", ref_filter_cmd=ref_filter_cmd)
    symbols = read_words_txt(words_path)
    utt2spk = read_utt2spk(data_dir / "utt2spk") if (data_dir / "utt2spk").exists() else None
    bar = None
    if progress:
        from asr_lm_quant.progress import bar as progress_bar
        bar = progress_bar(desc="MBR decoding" if decode_mbr else "best paths", unit="utt", total=len(ref),
                           mininterval=2.0)
    try:
        hyps = lattice_hyps(files, symbols, settings, words_name=words_path, decode_mbr=decode_mbr,
                            mbr_beam=mbr_beam)
        return score_sweep(ref, hyps, settings,
                           decode_dir, utt2spk=utt2spk, word_filter=_word_filter(hyp_filter),
                           hyp_filter_cmd=hyp_filter_cmd, test_filt_text=ref_content, stats=stats, plot=plot,
                           progress=bar)
    finally:
        if bar is not None:
            bar.close()


def sweep_texts(data_dir, hyp_texts: dict[Setting, Path], out_dir, *, hyp_filter: str = "none",
                hyp_filter_cmd: str | None = None, ref_filter_cmd: str | None = None, stats: bool = True,
                plot: bool = True) -> dict:
    """The same outputs from ready hypothesis texts, one file per setting (e.g. n-best rescoring output)."""
    data_dir = Path(data_dir)
    ref, ref_content = load_reference(data_dir / "text", ref_filter_cmd=ref_filter_cmd)
    settings = list(hyp_texts)
    loaded = {s: read_text(p) for s, p in hyp_texts.items()}
    keys = list(dict.fromkeys(k for h in loaded.values() for k in h))
    for s, h in loaded.items():
        missing = [k for k in keys if k not in h]
        if missing:
            raise InputError(hyp_texts[s], "hypothesis file lacks utterances the others have", key=missing[0])
    utt2spk = read_utt2spk(data_dir / "utt2spk") if (data_dir / "utt2spk").exists() else None
    hyps = ((k, {s: loaded[s][k] for s in settings}) for k in keys)
    return score_sweep(ref, hyps, settings, out_dir, utt2spk=utt2spk, word_filter=_word_filter(hyp_filter),
                       hyp_filter_cmd=hyp_filter_cmd, test_filt_text=ref_content, stats=stats, plot=plot)


def score_hyp_file(ref_text, hyp_text, *, out_dir=None, utt2spk=None, hyp_filter: str = "none",
                   mode: str = "present", sclite: bool = False) -> WerResult:
    """WER of one hypothesis text against a reference text; with ``out_dir``, also ``wer`` and
    ``wer_details/{per_utt,per_spk,ops}`` there."""
    ref = read_text(ref_text)
    hyp = read_text(hyp_text)
    f = _word_filter(hyp_filter)
    if f is not None:
        hyp = {k: f(v) for k, v in hyp.items()}
    res = score_texts(ref, hyp, mode=mode, sclite=sclite, align=out_dir is not None, hyp_name=str(hyp_text))
    if out_dir is not None:
        from asr_lm_quant.atomic import atomic_open
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(out_dir / "wer") as fh:
            fh.write(res.kaldi_report())
        spk = read_utt2spk(utt2spk) if utt2spk else None
        write_details(out_dir / "wer_details", res, Setting(0.0, "0"), spk)
        for name in ("lmwt", "wip"):  # no sweep here
            (out_dir / "wer_details" / name).unlink(missing_ok=True)
    return res


def _word_filter(name: str):
    if name not in WORD_FILTERS:
        raise InputError(None, f"unknown hypothesis filter {name!r} (choose from {', '.join(WORD_FILTERS)})")
    return WORD_FILTERS[name]
