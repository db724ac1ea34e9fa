"""Switchboard Hub5 scoring (``local/score_sclite.sh``): CTM per LM weight and penalty, SCTK ``hubscr.pl``,
the best WER chosen separately for each subset.

Lattices are scaled as that script does (``lattice-scale --lm-scale=LMWT`` then the penalty; default LMWT
5..17, penalties 0.0 0.5 1.0). For each setting ``<decode-dir>/score_LMWT_WIP/`` gets ``<name>.ctm`` (the
filtered CTM), ``stm`` and hubscr's ``<name>.ctm.filt.sys`` (and ``.raw .dtl .pra ...``); eval2000 also gets
``swbd`` (recordings not starting ``en_``) and ``callhm`` (not ``sw_``), rt03 ``swbd`` (not ``fsh_``) and
``fsh`` (not ``sw_``). ``<decode-dir>/scoring/`` gets ``best_wer`` (one line per subset, as
``grep Sum score_*/<name>.ctm.<subset>.filt.sys | utils/best_wer.sh`` prints it), ``hub5_summary.json``,
``hub5_summary.md`` and ``hub5_wer_vs_lmwt.png``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.bestpath import best_paths, word_times
from asr_lm_quant.scoring.ctm import (convert_ctm_lines, hub5_keep_ctm_line, read_reco2file_and_channel,
                                      read_segments, utterance_ctm)
from asr_lm_quant.scoring.sctk import SysRow, find_sctk, parse_sum_avg
from asr_lm_quant.scoring.sweep import DEFAULT_WIPS, Setting, format_lmwt, make_settings
from asr_lm_quant.scoring.textfile import read_text, read_words_txt, words_txt_of

log = logging.getLogger(__name__)

TOTAL = "total"


def subsets_for(name: str) -> list[tuple[str, str | None]]:
    """``(subset, excluded recording prefix)``: the total first, then Kaldi's subsets for eval2000 / rt03."""
    out = [(TOTAL, None)]
    if name.startswith("eval2000"):
        out += [("swbd", "en_"), ("callhm", "sw_")]
    elif name.startswith("rt03"):
        out += [("swbd", "fsh_"), ("fsh", "sw_")]
    return out


def run_hubscr(stm: Path, ctm: Path, glm: Path, *, sctk_bin: Path, log_path: Path | None = None) -> SysRow:
    """``hubscr.pl -p BIN -V -l english -h hub5 -g GLM -r STM CTM`` in the CTM's folder; the Sum/Avg row."""
    env = dict(os.environ)
    env["PATH"] = f"{sctk_bin}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(sctk_bin / "hubscr.pl"), "-p", str(sctk_bin), "-V", "-l", "english", "-h", "hub5",
           "-g", str(Path(glm).resolve()), "-r", str(Path(stm).resolve()), ctm.name]
    p = subprocess.run(cmd, cwd=ctm.parent, env=env, capture_output=True, text=True, errors="replace")
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("# " + " ".join(cmd) + "\n" + p.stdout + p.stderr, encoding="utf-8")
    if p.returncode != 0:
        raise InputError(ctm, f"hubscr.pl failed (exit {p.returncode}); see {log_path}: "
                              f"{(p.stdout + p.stderr).strip()[-400:]}")
    return parse_sum_avg(ctm.parent / f"{ctm.name}.filt.sys")


def _subset_lines(lines, prefix):
    return [ln for ln in lines if not ln.startswith(prefix)]


def best_wer_line(row_source: list[tuple[str, SysRow]]) -> tuple[str, SysRow] | None:
    """Kaldi's best_wer.sh over ``grep Sum score_*/...sys``: first lowest Err in C-locale order of the paths."""
    best = None
    for src, row in sorted(row_source, key=lambda x: x[0].encode("utf-8")):
        if best is None or best[1].err > row.err:
            best = (src, row)
    return best


def _ctm_for_setting(key, words, times, seg_map, r2fc, frame_shift, names):
    rel = utterance_ctm(key, words, times, frame_shift=frame_shift, segment=seg_map.get(key))
    return convert_ctm_lines(key, rel, seg_map, r2fc, segments_name=names[0], r2fc_name=names[1])


def hub5_score_ctms(data_dir, decode_dir, ctm_lines_by_setting, settings: list[Setting], *, name: str,
                    glm=None, stm=None, sctk_bin=None, nj: int = 2, plot: bool = True) -> dict:
    """Score ready CTM lines (recording-relative, unfiltered) for every setting with hubscr."""
    data_dir, decode_dir = Path(data_dir), Path(decode_dir)
    stm = Path(stm) if stm else data_dir / "stm"
    glm = Path(glm) if glm else data_dir / "glm"
    for f in (stm, glm):
        if not f.is_file():
            raise InputError(f, "file does not exist (Hub5 scoring needs data/<set>/stm and glm)")
    sctk_bin = find_sctk(sctk_bin)
    stm_lines = stm.read_text(encoding="utf-8").splitlines()
    subsets = subsets_for(name)
    jobs = []
    for s in settings:
        sdir = decode_dir / f"score_{s.name}"
        sdir.mkdir(parents=True, exist_ok=True)
        lines = [ln for ln in ctm_lines_by_setting[s] if hub5_keep_ctm_line(ln)]
        shutil.copyfile(stm, sdir / "stm")
        for sub, prefix in subsets:
            if sub == TOTAL:
                ctm, sstm, body = sdir / f"{name}.ctm", sdir / "stm", lines
            else:
                ctm, sstm = sdir / f"{name}.ctm.{sub}", sdir / f"stm.{sub}"
                body = _subset_lines(lines, prefix)
                with atomic_open(sstm) as f:
                    f.write("".join(ln + "\n" for ln in _subset_lines(stm_lines, prefix)))
            with atomic_open(ctm) as f:
                f.write("".join(ln + "\n" for ln in body))
            logp = decode_dir / "scoring" / "log" / f"score.{'' if sub == TOTAL else sub + '.'}{s.name}.log"
            jobs.append((s, sub, sstm, ctm, logp))

    def work(job):
        s, sub, sstm, ctm, logp = job
        return s, sub, ctm, run_hubscr(sstm, ctm, glm, sctk_bin=sctk_bin, log_path=logp)

    with ThreadPoolExecutor(max_workers=max(1, nj)) as ex:
        results = list(ex.map(work, jobs))
    return _summarise(decode_dir, name, settings, subsets, results, plot=plot)


def _summarise(decode_dir: Path, name, settings, subsets, results, *, plot):
    per = {(s, sub): (ctm, row) for s, sub, ctm, row in results}
    summary = {"name": name, "subsets": {}, "settings": []}
    best_lines = []
    for sub, _ in subsets:
        src_rows = [(f"{decode_dir}/score_{s.name}/{per[(s, sub)][0].name}.filt.sys", per[(s, sub)][1])
                    for s in settings]
        src, row = best_wer_line(src_rows)
        s_best = next(s for s in settings if f"score_{s.name}/" in src)
        line = row.wer_line(src)
        best_lines.append(line)
        summary["subsets"][sub] = {"wer": row.err, "lmwt": s_best.lmwt, "wip": s_best.wip, "best_wer": line,
                                   "sentences": row.sentences, "words": row.words, "corr": row.corr,
                                   "sub": row.sub, "del": row.dels, "ins": row.ins, "serr": row.serr}
    for s in settings:
        entry = {"lmwt": s.lmwt, "wip": s.wip}
        for sub, _ in subsets:
            entry[sub] = per[(s, sub)][1].err
        summary["settings"].append(entry)
    sc = decode_dir / "scoring"
    sc.mkdir(parents=True, exist_ok=True)
    with atomic_open(sc / "best_wer") as f:
        f.write("".join(ln + "\n" for ln in best_lines))
    with atomic_open(sc / "hub5_summary.json") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    with atomic_open(sc / "hub5_summary.md") as f:
        f.write(hub5_markdown(summary))
    if plot:
        from asr_lm_quant.scoring.plots import plot_sweep
        rows = [{"lmwt": e["lmwt"], "wip": e["wip"], "wer": e[TOTAL]} for e in summary["settings"]]
        tb = summary["subsets"][TOTAL]
        plot_sweep({"settings": rows, "best": {"lmwt": tb["lmwt"], "wip": tb["wip"], "wer": tb["wer"]}},
                   sc / "hub5_wer_vs_lmwt.png", title=f"Hub5 WER ({name}): {decode_dir}")
    return summary


def hub5_markdown(summary: dict) -> str:
    subs = list(summary["subsets"])
    lines = ["| subset | WER | LMWT | WIP | #Snt | #Wrd | Corr | Sub | Del | Ins |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for sub in subs:
        r = summary["subsets"][sub]
        lines.append(f"| {sub} | {r['wer']:.1f} | {format_lmwt(r['lmwt'])} | {r['wip']} | {r['sentences']} | "
                     f"{r['words']} | {r['corr']:.1f} | {r['sub']:.1f} | {r['del']:.1f} | {r['ins']:.1f} |")
    return "\n".join(lines) + "\n"


def hub5_sweep(data_dir, lang_or_words, decode_dir, *, min_lmwt: int = 5, max_lmwt: int = 17,
               wips=DEFAULT_WIPS, frame_shift: float = 0.03, glm=None, stm=None, name: str | None = None,
               sctk_bin=None, nj: int = 2, plot: bool = True, progress: bool = True) -> dict:
    """``local/score_sclite.sh`` on ``decode_dir/lat.*.gz``; returns the summary (also written as JSON).

    ``{"name", "subsets": {"total"|"swbd"|"callhm"|...: {"wer", "lmwt", "wip", "best_wer", ...}},
    "settings": [{"lmwt", "wip", "total", "swbd", ...}]}``.
    """
    from asr_lm_quant.kaldi.archive import read_lattices
    from asr_lm_quant.scoring.kaldi_sweep import lattice_files
    data_dir, decode_dir = Path(data_dir), Path(decode_dir)
    name = name or data_dir.name
    settings = make_settings(min_lmwt, max_lmwt, wips)
    words_path = words_txt_of(lang_or_words)
    symbols = read_words_txt(words_path)
    segs = read_segments(data_dir / "segments")
    r2fc = read_reco2file_and_channel(data_dir / "reco2file_and_channel")
    names = (data_dir / "segments", data_dir / "reco2file_and_channel")
    files = lattice_files(decode_dir)
    gs = [s.lmwt for s in settings]
    ac = [1.0] * len(settings)
    wp = [s.penalty for s in settings]
    lines = {s: [] for s in settings}
    bar = None
    if progress:
        from asr_lm_quant.progress import bar as progress_bar
        bar = progress_bar(desc="CTM from best paths", unit="utt", total=len(segs), mininterval=2.0)
    try:
        for f in files:
            for key, lat in read_lattices(f"ark:{f}"):
                for s, bp in zip(settings, best_paths(lat, gs, ac, wp, path=f, key=key)):
                    if bp is None:
                        continue
                    wt = word_times(lat, bp)
                    try:
                        words = [symbols[w] for w, _, _ in wt]
                    except KeyError as e:
                        raise InputError(words_path, f"word id {e.args[0]} of lattice {key} is not in the symbol "
                                                     "table", key=key) from None
                    lines[s].extend(_ctm_for_setting(key, words, [(st, n) for _, st, n in wt], segs, r2fc,
                                                     frame_shift, names))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return hub5_score_ctms(data_dir, decode_dir, lines, settings, name=name, glm=glm, stm=stm,
                           sctk_bin=sctk_bin, nj=nj, plot=plot)


def hub5_score_texts(data_dir, hyp_texts: dict[Setting, Path], out_dir, *, glm=None, stm=None,
                     name: str | None = None, sctk_bin=None, nj: int = 2, plot: bool = True) -> dict:
    """Hub5 scoring of ready hypothesis texts (no alignment: words spread evenly over each segment)."""
    data_dir = Path(data_dir)
    name = name or data_dir.name
    segs = read_segments(data_dir / "segments")
    r2fc = read_reco2file_and_channel(data_dir / "reco2file_and_channel")
    names = (data_dir / "segments", data_dir / "reco2file_and_channel")
    lines = {}
    for s, p in hyp_texts.items():
        hyp = read_text(p)
        lines[s] = [ln for key, words in hyp.items()
                    for ln in _ctm_for_setting(key, words, None, segs, r2fc, 0.01, names)]
    return hub5_score_ctms(data_dir, out_dir, lines, list(hyp_texts), name=name, glm=glm, stm=stm,
                           sctk_bin=sctk_bin, nj=nj, plot=plot)
