"""Hub5 scoring: CTM making and filtering, SCTK hubscr on a small eval2000-style set, CLI and step scripts."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from asr_lm_quant.scoring.ctm import (Segment, convert_ctm_lines, hub5_keep_ctm_line, read_segments,
                                      utterance_ctm)
from asr_lm_quant.scoring.hub5 import best_wer_line, hub5_score_texts, hub5_sweep, subsets_for
from asr_lm_quant.scoring.sctk import SctkMissing, SysRow, find_sctk, parse_sys_rows
from asr_lm_quant.scoring.sweep import Setting

FIX = Path(__file__).parent / "fixtures" / "scoring" / "eval2000_mini"
REPO = Path(__file__).resolve().parents[1]


def _sctk_or_skip():
    try:
        return find_sctk()
    except SctkMissing as e:
        pytest.skip(f"Hub5 scoring needs NIST SCTK: {e}")


def _data(tmp_path, name="eval2000_mini"):
    d = tmp_path / name
    shutil.copytree(FIX, d)
    return d


def test_ctm_times_like_nbest_to_ctm_and_convert_ctm():
    # float32(0.03) * 17 = 0.50999999 -> "0.51"; the segment start is added as written, then %.2f.
    rel = utterance_ctm("u", ["a", "b"], [(0, 17), (17, 4)], frame_shift=0.03)
    assert rel == [("0.00", "0.51", "a"), ("0.51", "0.12", "b")]
    segs = {"u": Segment("reco", 357.64, 359.64, "357.64")}
    lines = convert_ctm_lines("u", rel, segs, {"reco": ("en_4156", "A")})
    assert lines == ["en_4156 A 357.64 0.51 a", "en_4156 A 358.15 0.12 b"]
    # No alignment: spread over the segment.
    even = utterance_ctm("u", ["a", "b", "c", "d"], None, frame_shift=0.03, segment=segs["u"])
    assert even == [("0.00", "0.50", "a"), ("0.50", "0.50", "b"), ("1.00", "0.50", "c"), ("1.50", "0.50", "d")]
    with pytest.raises(InputError, match="segments"):
        convert_ctm_lines("v", rel, segs, {"reco": ("f", "A")}, segments_name="segments")


def test_hub5_ctm_filter():
    keep = ["en_4156 A 1.00 0.20 police", "en_4156 A 1.00 0.20 uh-huh", "en_4156 A 1.00 0.20 umm"]
    drop = ["en_4156 A 1.00 0.20 [noise]", "en_4156 A 1.00 0.20 [laughter]", "en_4156 A 1.00 0.20 [vocalized-noise]",
            "en_4156 A 1.00 0.20 <unk>", "en_4156 A 1.00 0.20 uh", "en_4156 A 1.00 0.20 UM",
            "en_4156 A 1.00 0.20 hee", "en_4156 A 1.00 0.20 abso-"]
    assert all(hub5_keep_ctm_line(x) for x in keep)
    assert not any(hub5_keep_ctm_line(x) for x in drop)


def test_subsets_and_best_line_order():
    assert subsets_for("eval2000_hires") == [("total", None), ("swbd", "en_"), ("callhm", "sw_")]
    assert subsets_for("rt03") == [("total", None), ("swbd", "fsh_"), ("fsh", "sw_")]
    assert subsets_for("train_dev") == [("total", None)]
    row = parse_sys_rows("     | Sum/Avg   | 4459  42989 | 90.8    6.0    3.1    1.5   10.6   42.0 |")[0]
    assert row == SysRow("Sum/Avg", 4459, 42989, 90.8, 6.0, 3.1, 1.5, 10.6, 42.0)
    assert row.wer_line("d/score_10_0.0/x.ctm.filt.sys") == \
        "%WER 10.6 | 4459 42989 | 90.8 6.0 3.1 1.5 10.6 42.0 | d/score_10_0.0/x.ctm.filt.sys"
    worse = SysRow("Sum/Avg", 1, 1, 0, 0, 0, 0, 11.0, 0)
    # Ties go to the first path in C-locale order (score_10_* sorts before score_9_*).
    src, _ = best_wer_line([("score_9_0.0/x", row), ("score_10_0.0/x", row), ("score_8_0.0/x", worse)])
    assert src == "score_10_0.0/x"


def test_hubscr_on_texts_matches_hand_counts(tmp_path):
    _sctk_or_skip()
    data = _data(tmp_path)
    out = tmp_path / "out"
    s = hub5_score_texts(data, {Setting(10.0, "0.0"): data / "hyp_good", Setting(11.0, "0.0"): data / "hyp_bad"},
                         out, plot=False)
    # Counted by hand (see fixtures README): good = 18 C, 1 S, 1 D of 20 words; swbd 6 C 1 S of 7;
    # callhm 12 C 1 D of 13. bad: callhm 2 D of 13, swbd all correct.
    by = {(e["lmwt"], e["wip"]): e for e in s["settings"]}
    assert by[(10.0, "0.0")] == {"lmwt": 10.0, "wip": "0.0", "total": 10.0, "swbd": 14.3, "callhm": 7.7}
    assert by[(11.0, "0.0")] == {"lmwt": 11.0, "wip": "0.0", "total": 10.0, "swbd": 0.0, "callhm": 15.4}
    t = s["subsets"]["total"]
    assert (t["words"], t["sentences"], t["sub"], t["del"], t["ins"], t["lmwt"]) == (20, 5, 5.0, 5.0, 0.0, 10.0)
    assert s["subsets"]["swbd"]["lmwt"] == 11.0 and s["subsets"]["callhm"]["lmwt"] == 10.0
    best = (out / "scoring" / "best_wer").read_text().splitlines()
    assert best == [
        f"%WER 10.0 | 5 20 | 90.0 5.0 5.0 0.0 10.0 40.0 | {out}/score_10_0.0/eval2000_mini.ctm.filt.sys",
        f"%WER 0.0 | 2 7 | 100.0 0.0 0.0 0.0 0.0 0.0 | {out}/score_11_0.0/eval2000_mini.ctm.swbd.filt.sys",
        f"%WER 7.7 | 3 13 | 92.3 0.0 7.7 0.0 7.7 33.3 | {out}/score_10_0.0/eval2000_mini.ctm.callhm.filt.sys"]
    raw = (out / "score_10_0.0" / "eval2000_mini.ctm.filt.raw").read_text()
    assert [r for r in parse_sys_rows(raw) if r.label == "Sum"][0].corr == 18
    ctm = (out / "score_10_0.0" / "eval2000_mini.ctm").read_text()
    assert "<unk>" not in ctm and "[laughter]" not in ctm and " um\n" not in ctm and "wha-" not in ctm
    assert not any(ln.startswith("en_") for ln in (out / "score_10_0.0" / "eval2000_mini.ctm.swbd").read_text().splitlines())
    assert json.loads((out / "scoring" / "hub5_summary.json").read_text()) == s
    assert (out / "scoring" / "hub5_summary.md").read_text().splitlines()[2].startswith("| total | 10.0 | 10 | 0.0 |")
    assert (out / "scoring" / "log" / "score.swbd.10_0.0.log").exists()


def test_hubscr_with_real_glm(tmp_path, shared_dir):
    _sctk_or_skip()
    data = _data(tmp_path)
    s = hub5_score_texts(data, {Setting(10.0, "0.0"): data / "hyp_good"}, tmp_path / "out",
                         glm=shared_dir / "fixtures" / "glm" / "en20030506.glm", plot=False)
    # The NIST GLM turns the hypothesis' "don't" into the alternatives {DON'T / DO NOT}; hubscr aligns
    # "DO NOT" against the reference's DON'T (1 ins + 1 sub), so callhm gets 3 errors of 13 words.
    sub = s["subsets"]
    assert (sub["total"]["wer"], sub["swbd"]["wer"], sub["callhm"]["wer"]) == (20.0, 14.3, 23.1)


def _word_lattice(words, ids, frames):
    arcs = []
    for i, (w, n) in enumerate(zip(words, frames)):
        arcs.append((i, i + 1, ids[w], ids[w], 1.0, 10.0, [3] * n))
    return Lattice.from_arcs(arcs, {len(words): (0.0, 0.0, [])}, num_states=len(words) + 1)


def test_hub5_sweep_from_lattices_and_cli(tmp_path):
    _sctk_or_skip()
    data = _data(tmp_path)
    text = {k: v.split() for k, v in (ln.split(" ", 1) for ln in (data / "hyp_good").read_text().splitlines())}
    vocab = ["<eps>"] + sorted({w for v in text.values() for w in v})
    ids = {w: i for i, w in enumerate(vocab)}
    (tmp_path / "words.txt").write_text("".join(f"{w} {i}\n" for i, w in enumerate(vocab)))
    dec = tmp_path / "decode"
    dec.mkdir()
    write_lattices(f"ark:| gzip -c > {dec}/lat.1.gz",
                   [(k, _word_lattice(v, ids, [10] * len(v))) for k, v in text.items()])
    s = hub5_sweep(data, tmp_path / "words.txt", dec, min_lmwt=10, max_lmwt=10, wips="0.0", plot=False,
                   progress=False)
    assert (s["subsets"]["total"]["wer"], s["subsets"]["swbd"]["wer"], s["subsets"]["callhm"]["wer"]) == (10.0, 14.3, 7.7)
    first = (dec / "score_10_0.0" / "eval2000_mini.ctm").read_text().splitlines()[0]
    assert first == "en_4156 A 357.64 0.30 he"  # 10 frames x 0.03 s from the segment start
    # The CLI over the same decode dir prints the three best_wer lines.
    rc = main(["score-hub5", str(data), str(tmp_path / "words.txt"), str(dec), "--min-lmwt", "9",
               "--max-lmwt", "10", "--word-ins-penalty", "0.5", "--no-plot"])
    assert rc == 0
    assert (dec / "score_9_0.5" / "eval2000_mini.ctm.callhm.filt.sys").exists()
    assert main(["score-hub5", str(data), str(tmp_path / "nowords.txt"), str(dec)]) == 1


def test_cli_wer_and_score_kaldi_script(tmp_path, capsys):
    sc = Path(__file__).parent / "fixtures" / "scoring"
    assert main(["wer", str(sc / "text"), str(sc / "hyp")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "%WER 15.96 [ 15 / 94, 4 ins, 5 del, 6 sub ] [PARTIAL]"
    assert main(["wer", str(sc / "text"), str(sc / "hyp"), "--mode", "strict"]) == 1
    assert "sw02005-A_000800-000813" in capsys.readouterr().err
    # The step script with a hypothesis text, through run.pl, with its log.
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sc / "text", data / "text")
    shutil.copy(sc / "utt2spk", data / "utt2spk")
    lang = tmp_path / "lang"
    lang.mkdir()
    (lang / "words.txt").write_text("<eps> 0\n")
    out = tmp_path / "dec"
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{REPO / 'steps'}:{os.environ['PATH']}")
    p = subprocess.run(["bash", str(REPO / "steps" / "score_kaldi.sh"), "--hyp", f"10:0.0:{sc / 'hyp'}",
                        str(data), str(lang), str(out)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"%WER 15.96 [ 15 / 94, 4 ins, 5 del, 6 sub ] [PARTIAL] {out}/wer_10_0.0"
    assert (out / "scoring_kaldi" / "log" / "score.log").read_text().startswith("# ")
    assert (out / "scoring_kaldi" / "wer_details" / "per_spk").exists()
    p = subprocess.run(["bash", str(REPO / "steps" / "score_kaldi.sh"), str(data), str(lang)],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert p.returncode == 1 and "Usage" in p.stderr
