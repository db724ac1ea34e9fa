"""Mini recipe helpers: lattice oracle, dev/eval tuning, output checker, sentence selection, data dirs."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local" / "mini"))

from asr_lm_quant.kaldi.lattice import Lattice  # noqa: E402
from asr_lm_quant.kaldi.synthetic import random_compact_lattice  # noqa: E402


def _edit(a, b):
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


def _all_paths(lat):
    offs = lat.arc_offsets()
    out = []

    def walk(s, words):
        if lat.is_final()[s]:
            out.append([w for w in words if w])
        for i in range(offs[s], offs[s + 1]):
            walk(int(lat.dst[i]), words + [int(lat.olabel[i])])

    walk(lat.start, [])
    return out


def test_lattice_oracle_matches_brute_force():
    from oracle import lattice_oracle_errors
    lat = Lattice.from_arcs([(0, 1, 1, 1, 0, 0), (0, 1, 2, 2, 0, 0), (1, 2, 3, 3, 0, 0), (1, 2, 0, 0, 0, 0),
                             (2, 3, 4, 4, 0, 0), (0, 3, 5, 5, 0, 0)], {3: (0, 0), 2: (1, 1)})
    for ref in ([1, 3, 4], [2, 4], [5], [], [7, 7, 7], [2, 3, 3, 4]):
        want = min(_edit(ref, p) for p in _all_paths(lat))
        assert lattice_oracle_errors(lat, ref) == want, ref


def test_lattice_oracle_on_random_lattices():
    import numpy as np
    from oracle import lattice_oracle_errors
    rng = np.random.default_rng(3)
    for _ in range(5):
        lat = random_compact_lattice(rng, num_frames=12, num_states=7, vocab=5)
        paths = _all_paths(lat)
        if not paths or len(paths) > 2000:
            continue
        ref = list(rng.integers(1, 6, size=4))
        assert lattice_oracle_errors(lat, ref) == min(_edit(ref, p) for p in paths)


def _sweep(d: Path, wers: dict):
    (d / "scoring_kaldi").mkdir(parents=True)
    settings = [{"lmwt": float(l), "wip": w, "wer": v, "ref_words": 100, "wer_line": f"%WER {v}"}
                for (l, w), v in wers.items()]
    best = min(settings, key=lambda s: s["wer"])
    (d / "scoring_kaldi" / "sweep.json").write_text(json.dumps({"settings": settings, "best": best}))


def test_tune_reports_eval_at_the_dev_choice(tmp_path):
    from tune import tune
    _sweep(tmp_path / "a_dev", {(8, "0.0"): 12.0, (9, "0.0"): 11.0, (9, "0.5"): 11.5})
    _sweep(tmp_path / "a_eval", {(8, "0.0"): 10.0, (9, "0.0"): 13.0, (9, "0.5"): 9.0})
    _sweep(tmp_path / "b_dev", {(8, "0.0"): 11.5, (9, "0.0"): 14.0, (9, "0.5"): 12.5})
    _sweep(tmp_path / "b_eval", {(8, "0.0"): 12.5, (9, "0.0"): 8.0, (9, "0.5"): 9.5})
    res = tune({"0.5": (tmp_path / "a_dev", tmp_path / "a_eval"), "0.7": (tmp_path / "b_dev", tmp_path / "b_eval")})
    assert res["chosen"] == {"weight": "0.5", "lmwt": 9.0, "wip": 0.0}
    assert res["dev_wer"] == 11.0 and res["eval_wer"] == 13.0  # not the eval minimum (8.0): no peeking
    assert res["eval_oracle_setting_wer"] == 9.0
    assert res["dev_wer_by_weight"] == {"0.5": 11.0, "0.7": 11.5}
    assert res["eval_wer_by_weight"] == {"0.5": 13.0, "0.7": 12.5}


def test_tune_keeps_the_eval_one_best_at_the_choice(tmp_path):
    from tune import main as tune_main
    from asr_lm_quant.scoring.significance import read_per_utt
    _sweep(tmp_path / "a_dev", {(8, "0.0"): 12.0, (9, "0.5"): 11.0})
    _sweep(tmp_path / "a_eval", {(8, "0.0"): 10.0, (9, "0.5"): 13.0})
    sk = tmp_path / "a_eval" / "scoring_kaldi"
    (sk / "test_filt.txt").write_text("u1 a b c\nu2 d e\n")
    for wip, lmwt, text in (("0.0", "8", "u1 a b c\nu2 d e\n"), ("0.5", "9", "u1 a x c\nu2 d\n")):
        (sk / f"penalty_{wip}").mkdir()
        (sk / f"penalty_{wip}" / f"{lmwt}.txt").write_text(text)
    out = tmp_path / "res" / "nbest.json"
    out.parent.mkdir()
    tune_main(["--out", str(out), f"0.5={tmp_path / 'a_dev'},{tmp_path / 'a_eval'}"])
    res = json.loads(out.read_text())
    assert res["eval_hyp"] == "nbest.eval_hyp.txt" and res["eval_per_utt"] == "nbest.eval_per_utt"
    # The dev choice (LMWT 9, penalty 0.5), not the eval half's best setting.
    assert (out.parent / "nbest.eval_hyp.txt").read_text() == "u1 a x c\nu2 d\n"
    per_utt = read_per_utt(out.parent / "nbest.eval_per_utt")
    assert per_utt.keys == ["u1", "u2"] and list(per_utt.errors) == [1, 1] and list(per_utt.ref_words) == [3, 2]
    (sk / "penalty_0.5" / "9.txt").unlink()
    with pytest.raises(SystemExit, match="penalty_0.5/9.txt does not exist"):
        tune_main(["--out", str(out), f"0.5={tmp_path / 'a_dev'},{tmp_path / 'a_eval'}"])


def _scored_eval(d: Path, wers: dict):
    """An eval dir as steps/score_kaldi.sh leaves it: the sweep, the reference and each setting's 1-best
    (utterance u2's hypothesis names the setting, so a test can tell which file was taken)."""
    _sweep(d, wers)
    sk = d / "scoring_kaldi"
    (sk / "test_filt.txt").write_text("u1 a b c\nu2 d e\n")
    for lmwt, wip in wers:
        (sk / f"penalty_{wip}").mkdir(exist_ok=True)
        (sk / f"penalty_{wip}" / f"{lmwt}.txt").write_text(f"u1 a b c\nu2 {d.name}_{lmwt}_{wip}\n")


def test_tune_at_a_reference_systems_choice(tmp_path):
    from tune import main as tune_main
    from asr_lm_quant.scoring.significance import read_per_utt
    grid = [(8, "0.0"), (9, "0.5")]
    for sys_, dev_best in (("fp", {"0.9": (9, "0.5")}), ("q", {"0.5": (8, "0.0")})):
        for w in ("0.5", "0.9"):
            best = dev_best.get(w)
            _sweep(tmp_path / sys_ / f"dev_w{w}", {s: (5.0 if s == best else 9.0) for s in grid})
            _scored_eval(tmp_path / sys_ / f"eval_w{w}",
                         {(l, p): 20 + l / 10 + float(p) + float(w) + (sys_ == "q") for l, p in grid})
    pairs = {s: [f"{w}={tmp_path / s / f'dev_w{w}'},{tmp_path / s / f'eval_w{w}'}" for w in ("0.5", "0.9")]
             for s in ("fp", "q")}
    fp_out, q_out = tmp_path / "fp.json", tmp_path / "q" / "nbest.json"
    tune_main(["--out", str(fp_out), *pairs["fp"]])
    assert json.loads(fp_out.read_text())["chosen"] == {"weight": "0.9", "lmwt": 9.0, "wip": 0.5}
    tune_main(["--reference", str(fp_out), "--out", str(q_out), *pairs["q"]])
    res = json.loads(q_out.read_text())
    # Its own choice stays what dev says for it (w 0.5, LMWT 8, penalty 0.0) ...
    assert res["chosen"] == {"weight": "0.5", "lmwt": 8.0, "wip": 0.0} and res["eval_wer"] == pytest.approx(22.3)
    # ... and at_reference is the eval half at the reference's choice (w 0.9, LMWT 9, penalty 0.5).
    at = res["at_reference"]
    assert at["chosen"] == {"weight": "0.9", "lmwt": 9.0, "wip": 0.5} and at["tuning"] == str(fp_out)
    assert at["eval_wer"] == pytest.approx(20 + 0.9 + 0.5 + 0.9 + 1)
    assert at["eval_hyp"] == "nbest.eval_hyp_at_reference.txt"
    assert (q_out.parent / at["eval_hyp"]).read_text() == "u1 a b c\nu2 eval_w0.9_9_0.5\n"
    assert list(read_per_utt(q_out.parent / at["eval_per_utt"]).errors) == [0, 2]
    assert (q_out.parent / "nbest.eval_hyp.txt").read_text() == "u1 a b c\nu2 eval_w0.5_8_0.0\n"


def test_tune_reference_errors(tmp_path):
    from tune import main as tune_main
    _sweep(tmp_path / "dev", {(8, "0.0"): 5.0})
    _scored_eval(tmp_path / "eval", {(8, "0.0"): 6.0})
    pair = f"0.5={tmp_path / 'dev'},{tmp_path / 'eval'}"
    out = tmp_path / "q.json"
    with pytest.raises(SystemExit, match=r"--reference .*missing.json: No such file .*tune the reference"):
        tune_main(["--reference", str(tmp_path / "missing.json"), "--out", str(out), pair])
    ref = tmp_path / "ref.json"
    ref.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a tuning result of this script"):
        tune_main(["--reference", str(ref), "--out", str(out), pair])
    ref.write_text(json.dumps({"chosen": {"weight": "0.7", "lmwt": 8.0, "wip": 0.0}}))
    with pytest.raises(SystemExit, match=r"chose weight 0.7, which is not among the weights given here \(0.5\)"):
        tune_main(["--reference", str(ref), "--out", str(out), pair])
    ref.write_text(json.dumps({"chosen": {"weight": "0.5", "lmwt": 11.0, "wip": 0.0}}))
    with pytest.raises(SystemExit, match="has no LMWT 11 with penalty 0.0"):
        tune_main(["--reference", str(ref), "--out", str(out), pair])
    assert list(tmp_path.glob("q.*")) == []  # nothing written when the reference cannot be honoured


def test_check_outputs_lists_problems_and_fails(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    r = subprocess.run([sys.executable, str(ROOT / "local/mini/check_outputs.py"), "--upto", "2", str(exp)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "data/lm/train.txt: missing" in r.stderr and "3gram.arpa: missing" in r.stderr
    (exp / "ngram").mkdir()
    (exp / "ngram" / "ppl_test.json").write_text("{not json")
    r = subprocess.run([sys.executable, str(ROOT / "local/mini/check_outputs.py"), "--upto", "1", str(exp)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "ppl_test.json: not valid JSON" in r.stderr


def test_quant_systems_selects_by_model(tmp_path):
    """What run.sh passes to ``quant-sweep --only``: the base LM's systems, and the deeper LM's as well
    unless --larger-lm false; the recipe's own systems file has both kinds."""
    script = str(ROOT / "local/mini/quant_systems.py")
    conf = ROOT / "recipes/mini/conf/quant.json"
    systems = json.loads(conf.read_text())["systems"]

    def names(models):
        r = subprocess.run([sys.executable, script, str(conf), models], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().split(",")

    base, both = names("base"), names("base,deep")
    assert base == [s["name"] for s in systems if "model" not in s] and "fp" in base
    assert both == [s["name"] for s in systems] and len(both) > len(base)
    assert all(s.get("model") == "deep" for s in systems if s["name"] not in base)
    r = subprocess.run([sys.executable, script, str(conf), "huge"], capture_output=True, text=True)
    assert r.returncode == 1 and "has no system of model(s) huge" in r.stderr
    (tmp_path / "bad.json").write_text('{"systems": [{"name": "a"}]}')
    r = subprocess.run([sys.executable, script, str(tmp_path / "bad.json"), "base"], capture_output=True, text=True)
    assert r.returncode == 1 and "bad.json" in r.stderr and "needs a 'name' and a 'method'" in r.stderr


def test_select_sentences_filters_and_is_deterministic(tmp_path):
    from prepare_test import select_sentences
    lines = ["a b c d e", "a b <unk> d e", "a b c", "a b c d zz", "e d c b a", "a a a a a a", ""]
    p = tmp_path / "test.txt"
    p.write_text("\n".join(lines) + "\n")
    vocab = {"a", "b", "c", "d", "e", "zz"}
    pron = {"a", "b", "c", "d", "e"}
    got = select_sentences(p, vocab, pron, num=3, min_words=5, max_words=6, seed=1)
    assert [n for n, _ in got] == [1, 5, 6]
    two = select_sentences(p, vocab, pron, num=2, min_words=5, max_words=6, seed=7)
    assert two == select_sentences(p, vocab, pron, num=2, min_words=5, max_words=6, seed=7)
    assert [n for n, _ in two] == sorted(n for n, _ in two)
    # Sentences the recogniser cannot fully output (zz has no pronunciation) only fill up a shortfall.
    four = select_sentences(p, vocab, pron, num=4, min_words=5, max_words=6)
    assert [n for n, _ in four] == [1, 4, 5, 6]
    from asr_lm_quant.errors import InputError
    with pytest.raises(InputError, match="only 4 eligible"):
        select_sentences(p, vocab, pron, num=5, min_words=5, max_words=6)


def test_data_dir_is_sorted_and_complete(tmp_path):
    from datadir import write_data_dir
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"RIFF")
    utts = [("slt-000002", "slt", ["b"], wav), ("kal-000009", "kal", ["a", "c"], wav),
            ("slt-000001", "slt", ["d"], wav)]
    write_data_dir(tmp_path / "test", utts, info={"num": 3})
    d = tmp_path / "test"
    assert (d / "text").read_text() == "kal-000009 a c\nslt-000001 d\nslt-000002 b\n"
    assert (d / "spk2utt").read_text() == "kal kal-000009\nslt slt-000001 slt-000002\n"
    assert (d / "wav.scp").read_text().splitlines()[0] == f"kal-000009 {(d / 'wav' / 'kal-000009.wav').resolve()}"
    with pytest.raises(ValueError, match="must start with its speaker"):
        write_data_dir(tmp_path / "bad", [("x-1", "slt", ["a"], wav)])
    assert not (tmp_path / "bad").exists()


def test_job_blocks_cover_everything_once():
    from asr_lm_quant.decode.decode_dir import job_block
    items = list(range(11))
    for nj in (1, 2, 3, 11):
        blocks = [job_block(items, j, nj) for j in range(1, nj + 1)]
        assert list(itertools.chain(*blocks)) == items
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
