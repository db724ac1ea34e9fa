"""Significance of WER differences: MAPSSWE (checked against SCTK's sc_stats), paired bootstrap, sign test,
and the ``wer-compare`` command."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring import details
from asr_lm_quant.scoring import significance as sig
from asr_lm_quant.scoring.sctk import SctkMissing, find_sctk, sc_stats_mapsswe
from asr_lm_quant.scoring.textfile import read_text
from asr_lm_quant.scoring.wer import score_texts

FIX = Path(__file__).parent / "fixtures" / "scoring" / "compare"


def _system(name, errors, ref_words=None):
    errors = np.array(errors, dtype=np.int64)
    ref = np.array(ref_words if ref_words is not None else [10] * len(errors), dtype=np.int64)
    return sig.SystemErrors(name, name, [f"u{i}" for i in range(len(errors))], ref, errors)


def _scored(name, hyp_file, *, sclite=False, align=True):
    ref = read_text(FIX / "text")
    return sig.from_result(name, hyp_file, score_texts(ref, read_text(FIX / hyp_file), mode="strict", sclite=sclite,
                                                        align=align))


def test_mapsswe_by_hand():
    a = _system("A", [2, 1, 0, 3, 0, 1])
    b = _system("B", [1, 1, 0, 1, 0, 0])
    mp = sig.mapsswe(a, b)
    # Utterances 2 and 4 have no error in either system and are left out: d = B - A = -1, 0, -2, -1.
    assert mp["segments"] == 4
    assert mp["mean"] == -1.0
    assert mp["std"] == pytest.approx(math.sqrt(2 / 3))
    assert mp["z"] == pytest.approx(-1.0 / (math.sqrt(2 / 3) / 2))  # -2.449
    assert mp["p"] == pytest.approx(2 * norm.sf(2.449489742783178))
    assert mp["significant_95"] and not mp["significant_99"]
    # Swapping the systems flips the sign only.
    back = sig.mapsswe(b, a)
    assert back["z"] == pytest.approx(-mp["z"]) and back["p"] == pytest.approx(mp["p"])


def test_mapsswe_without_spread_is_zero_as_in_sc_stats():
    mp = sig.mapsswe(_system("A", [2, 2, 0]), _system("B", [1, 1, 0]))
    assert (mp["segments"], mp["z"], mp["p"], mp["significant_95"]) == (2, 0.0, 1.0, False)
    none = sig.mapsswe(_system("A", [0, 0]), _system("B", [0, 0]))
    assert (none["segments"], none["z"], none["p"]) == (0, 0.0, 1.0)


def test_fixture_systems_by_hand():
    a, b, c = _scored("A", "hyp_a"), _scored("B", "hyp_b"), _scored("C", "hyp_c")
    assert [int(x) for x in a.errors] == [1, 1, 1, 0, 0, 1]
    assert [int(x) for x in c.errors] == [3, 1, 0, 1, 0, 1]
    assert (a.wer, b.wer, c.wer) == pytest.approx((40 / 3, 10 / 3, 20.0))
    ab = sig.compare(a, b)
    # d = B - A over u1 u2 u3 u6 = -1 -1 -1 0: mean -0.75, std 0.5, z = -0.75 / (0.5 / 2) = -3.
    assert ab["mapsswe"]["z"] == pytest.approx(-3.0)
    assert ab["mapsswe"]["p"] == pytest.approx(2 * norm.sf(3.0))
    assert ab["mapsswe"]["significant_99"] and ab["significant"] and sig.marker(ab) == "**"
    assert ab["diff"] == pytest.approx(-10.0)
    assert ab["sign"] == {"b_better": 3, "a_better": 0, "ties": 3, "p": pytest.approx(0.25)}
    ac = sig.compare(a, c)
    # d = C - A over u1 u2 u3 u4 u6 = 2 0 -1 1 0: mean 0.4, variance 5.2 / 4.
    assert ac["mapsswe"]["z"] == pytest.approx(0.4 / math.sqrt(1.3 / 5))
    assert not ac["significant"] and sig.marker(ac) == "~"
    assert ac["bootstrap"]["ci_low"] < ac["diff"] < ac["bootstrap"]["ci_high"]


def test_sign_test_by_hand():
    a = _system("A", [3] * 8 + [0, 0, 1, 1])
    b = _system("B", [1] * 8 + [2, 2, 1, 1])
    s = sig.sign_test(a, b)
    assert (s["b_better"], s["a_better"], s["ties"]) == (8, 2, 2)
    assert s["p"] == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_sctk_segments_by_hand():
    # One error each, 2 right words between: still one segment (it needs 2 right words after an error to end).
    assert sig.sctk_segments("CCSCCC", "CCCCDC") == [(6, 1, 1)]
    # Two right words end a segment; the next starts one right word back.
    assert sig.sctk_segments("SCCSCC", "CCCCCC") == [(3, 1, 0), (5, 1, 0)]
    assert sig.sctk_segments("CCC", "CCC") == []
    # A trailing insertion opens a last segment, in A as in B (whose rest joins the last segment).
    assert sig.sctk_segments("CCI", "CC") == [(2, 1, 0)]
    assert sig.sctk_segments("CC", "CCI") == [(2, 0, 1)]
    assert sig.sctk_segments("", "I") == [(0, 0, 1)]
    assert sig.sctk_segments("ICSC", "CCCC") == [(3, 2, 0)]


def _random_systems(rng, n_utts, max_len, vocab, insertions=True):
    words = [f"w{i}" for i in range(vocab)]
    ref = {f"utt{i:04d}": [rng.choice(words) for _ in range(rng.randint(1, max_len))] for i in range(n_utts)}

    def hyp(p_err):
        out = {}
        for k, r in ref.items():
            h = []
            for w in r:
                x = rng.random()
                if x < p_err / 2:
                    h.append(rng.choice(words) + "x")  # never the reference word: a substitution
                elif x < p_err and not insertions:
                    continue  # deletion
                elif x < p_err:
                    h += [w, rng.choice(words)] if rng.random() < 0.5 else []  # insertion or deletion
                else:
                    h.append(w)
            out[k] = h
        return out
    return ref, hyp(0.2), hyp(0.3)


def _sctk_or_skip():
    try:
        sc = find_sctk()
    except SctkMissing as e:
        pytest.skip(f"sc_stats comparison needs NIST SCTK: {e}")
    if not (sc / "sc_stats").is_file():
        pytest.skip(f"sc_stats comparison needs SCTK's sc_stats ({sc} has none)")


def _check_against_sc_stats(ref, ha, hb, segments):
    res_a = score_texts(ref, ha, mode="strict", sclite=True, align=True)
    res_b = score_texts(ref, hb, mode="strict", sclite=True, align=True)
    a, b = sig.from_result("A", "a", res_a), sig.from_result("B", "b", res_b)
    ours = sig.mapsswe(a, b, segments=segments)
    theirs = sc_stats_mapsswe(ref, ha, hb)
    assert theirs["segments"] == ours["segments"]
    # sc_stats's z is of A's errors minus B's; it prints three decimals.
    assert theirs["z"] == pytest.approx(-ours["z"], abs=6e-4)
    assert theirs["mean"] == pytest.approx(-ours["mean"], abs=6e-4)
    assert theirs["std"] == pytest.approx(ours["std"], abs=6e-4)
    assert theirs["significant_95"] == ours["significant_95"]
    # Its p comes from a normal table read at the tabulated z below: never below ours, at most ~0.01 above.
    if theirs["p_is_bound"]:
        assert ours["p"] < theirs["p"]
    else:
        assert -1e-3 <= theirs["p"] - ours["p"] <= 0.011
    better = None if not ours["significant_95"] else "sysB" if ours["z"] < 0 else "sysA"
    assert theirs["winner"] == better
    return ours


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sctk_segmentation_equals_sc_stats(seed):
    _sctk_or_skip()
    rng = random.Random(seed)
    ref, ha, hb = _random_systems(rng, 120, 15, 30)
    ours = _check_against_sc_stats(ref, ha, hb, "sctk")
    assert ours["segments"] > 120  # long utterances: several segments each


@pytest.mark.parametrize("seed,n_utts", [(3, 60), (4, 150), (5, 400)])
def test_utterance_segments_equal_sc_stats_where_utterances_are_its_segments(seed, n_utts):
    # Up to three reference words and no insertions: sc_stats cannot cut an utterance in two, so its
    # segments are exactly the utterances with an error.
    _sctk_or_skip()
    rng = random.Random(seed)
    ref, ha, hb = _random_systems(rng, n_utts, 3, 20, insertions=False)
    ours = _check_against_sc_stats(ref, ha, hb, "utterance")
    a = score_texts(ref, ha, sclite=True)
    b = score_texts(ref, hb, sclite=True)
    assert ours["segments"] == sum(1 for k in ref if a.utts[k].errors or b.utts[k].errors)


def test_sc_stats_finds_the_fixture_difference():
    _sctk_or_skip()
    ref = read_text(FIX / "text")
    theirs = sc_stats_mapsswe(ref, read_text(FIX / "hyp_a"), read_text(FIX / "hyp_b"))
    assert theirs["z"] == pytest.approx(3.0) and theirs["significant_95"] and theirs["winner"] == "sysB"


def test_bootstrap_is_deterministic_with_the_seed():
    rng = np.random.default_rng(7)
    ref = rng.integers(3, 20, 200)
    a = _system("A", rng.binomial(ref, 0.2), ref)
    b = _system("B", rng.binomial(ref, 0.18), ref)
    one = sig.paired_bootstrap(a, b, samples=2000, seed=11)
    assert sig.paired_bootstrap(a, b, samples=2000, seed=11) == one
    other = sig.paired_bootstrap(a, b, samples=2000, seed=12)
    assert (other["ci_low"], other["ci_high"]) != (one["ci_low"], one["ci_high"])
    assert one["ci_low"] < b.wer - a.wer < one["ci_high"]
    assert one["samples"] == 2000 and one["seed"] == 11


def test_bootstrap_coverage_of_a_known_difference():
    # Per-word error rates 15% and 12%: the true WER difference is -3.0 points. The 95% interval should
    # hold it in about 95% of data sets.
    rng = np.random.default_rng(2004)
    ref = rng.integers(5, 21, 300)
    covered, improvement = 0, []
    runs = 200
    for r in range(runs):
        a = _system("A", rng.binomial(ref, 0.15), ref)
        b = _system("B", rng.binomial(ref, 0.12), ref)
        bs = sig.paired_bootstrap(a, b, samples=1000, seed=r)
        covered += bs["ci_low"] <= -3.0 <= bs["ci_high"]
        improvement.append(bs["p_improvement"])
    assert 0.90 <= covered / runs <= 0.99
    # A 3-point gain on ~3800 words is found nearly always.
    assert np.median(improvement) > 0.95


def test_bootstrap_of_equal_systems_is_centred():
    rng = np.random.default_rng(3)
    ref = rng.integers(5, 21, 400)
    errors = rng.binomial(ref, 0.2)
    bs = sig.paired_bootstrap(_system("A", errors, ref), _system("B", errors, ref), samples=500)
    assert (bs["ci_low"], bs["ci_high"], bs["p_improvement"]) == (0.0, 0.0, 0.0)


def test_per_utt_round_trip(tmp_path):
    ref = read_text(FIX / "text")
    res = score_texts(ref, read_text(FIX / "hyp_c"), align=True)
    (tmp_path / "per_utt").write_text(details.per_utt_text(res))
    back = sig.read_per_utt(tmp_path / "per_utt", "C")
    direct = sig.from_result("C", "x", res)
    assert back.keys == direct.keys and back.ops == direct.ops
    assert list(back.errors) == list(direct.errors) and list(back.ref_words) == list(direct.ref_words)
    assert back.ops[0] == "CSCCSS"


def test_per_utt_errors_name_file_and_line(tmp_path):
    p = tmp_path / "per_utt"
    p.write_text("u1 #csid 1 2 3\n")
    with pytest.raises(InputError, match=r"per_utt, line 1, key 'u1': expected 'utt-id #csid C S I D'"):
        sig.read_per_utt(p)
    p.write_text("u1 ref a b\nu1 hello\n")
    with pytest.raises(InputError, match=r"line 2: not a per_utt line"):
        sig.read_per_utt(p)
    p.write_text("u1 op C X\nu1 #csid 1 0 0 0\n")
    with pytest.raises(InputError, match=r"line 1, key 'u1': unknown operation 'X'"):
        sig.read_per_utt(p)
    p.write_text("u1 op C S\nu1 #csid 2 0 0 0\n")
    with pytest.raises(InputError, match=r"key 'u1': op line and #csid counts disagree"):
        sig.read_per_utt(p)
    p.write_text("u1 ref a\n")
    with pytest.raises(InputError, match=r"no '#csid' lines"):
        sig.read_per_utt(p)


def test_mismatched_utterances_name_file_and_utterance():
    a = _system("A", [1, 2, 3])
    b = sig.SystemErrors("B", "b_per_utt", ["u0", "u1"], np.array([10, 10]), np.array([1, 1]))
    with pytest.raises(InputError, match=r"b_per_utt, key 'u2': utterance is missing \(it is in A\)"):
        sig.check_same_utterances([a, b])
    c = sig.SystemErrors("C", "c_per_utt", ["u0", "u1", "u2", "u9"], np.array([10] * 4), np.array([1] * 4))
    with pytest.raises(InputError, match=r"c_per_utt, key 'u9': utterance is not in A"):
        sig.check_same_utterances([a, c])
    d = sig.SystemErrors("D", "d_per_utt", ["u2", "u1", "u0"], np.array([10, 11, 10]), np.array([0, 0, 0]))
    with pytest.raises(InputError, match=r"d_per_utt, key 'u1': 11 reference words here, 10 in A"):
        sig.check_same_utterances([a, d])
    # Another order is fine: it is put in the first system's order.
    e = sig.SystemErrors("E", "e", ["u2", "u1", "u0"], np.array([10, 10, 10]), np.array([5, 4, 3]))
    assert list(sig.check_same_utterances([a, e])[1].errors) == [3, 4, 5]


def _rows(out):
    return [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| system A")]


def test_wer_compare_cli_texts(tmp_path, capsys):
    js = tmp_path / "cmp.json"
    hyps = [str(FIX / h) for h in ("hyp_a", "hyp_b", "hyp_c")]
    assert main(["wer-compare", "--ref", str(FIX / "text"), *hyps, "--names", "A,B,C", "--json", str(js)]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(rows) == 3  # all pairs
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[:6] == ["A", "B", "13.33", "3.33", "-10.00", "0.003"]
    assert cells[8] == "yes"
    assert [c.strip() for c in rows[1].split("|")[1:-1]][8] == "no"  # A vs C
    saved = json.loads(js.read_text())
    assert [s["name"] for s in saved["systems"]] == ["A", "B", "C"]
    assert saved["systems"][2]["errors"] == 6 and saved["counts"] == "kaldi"
    ab = saved["comparisons"][0]
    assert ab["mapsswe"]["z"] == pytest.approx(-3.0) and ab["bootstrap"]["samples"] == 10000
    assert cells[6] == f"[{ab['bootstrap']['ci_low']:+.2f}, {ab['bootstrap']['ci_high']:+.2f}]"
    # An existing JSON is not replaced unasked, and nothing is printed then.
    assert main(["wer-compare", "--ref", str(FIX / "text"), *hyps[:2], "--json", str(js)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["wer-compare", "--ref", str(FIX / "text"), *hyps[:2], "--json", str(js), "--overwrite",
                 "--baseline", hyps[1], "--samples", "200"]) == 0
    assert json.loads(js.read_text())["comparisons"][0]["a"] == hyps[1]


def test_wer_compare_cli_per_utt_equals_texts(tmp_path, capsys):
    for h in ("hyp_a", "hyp_c"):
        assert main(["wer", str(FIX / "text"), str(FIX / h), "--out-dir", str(tmp_path / h)]) == 0
    capsys.readouterr()
    per_utt = [str(tmp_path / h / "wer_details" / "per_utt") for h in ("hyp_a", "hyp_c")]
    for seg in ("utterance", "sctk"):
        assert main(["wer-compare", *per_utt, "--names", "A,C", "--segments", seg]) == 0
        from_tables = _rows(capsys.readouterr().out)
        assert main(["wer-compare", "--ref", str(FIX / "text"), str(FIX / "hyp_a"), str(FIX / "hyp_c"),
                     "--names", "A,C", "--segments", seg]) == 0
        assert _rows(capsys.readouterr().out) == from_tables


@pytest.mark.parametrize("hyp,message", [
    ("hyp_missing", "hyp_missing, key 'u4': no hypothesis for this utterance of the reference"),
    ("hyp_extra", "hyp_extra, key 'u7': utterance is not in the reference"),
])
def test_wer_compare_cli_mismatched_utterances(tmp_path, capsys, hyp, message):
    js = tmp_path / "cmp.json"
    assert main(["wer-compare", "--ref", str(FIX / "text"), str(FIX / "hyp_a"), str(FIX / hyp),
                 "--json", str(js)]) == 1
    cap = capsys.readouterr()
    assert message in cap.err and "Traceback" not in cap.err
    assert cap.out == "" and not js.exists()


def test_wer_compare_cli_bad_arguments(capsys):
    ref, a, b = str(FIX / "text"), str(FIX / "hyp_a"), str(FIX / "hyp_b")
    assert main(["wer-compare", "--ref", ref, a]) == 1
    assert "at least two systems" in capsys.readouterr().err
    assert main(["wer-compare", "--ref", ref, a, b, "--names", "X"]) == 1
    assert "1 names for 2 systems" in capsys.readouterr().err
    assert main(["wer-compare", "--ref", ref, a, b, "--baseline", "nope"]) == 1
    assert "--baseline 'nope' is not one of the systems" in capsys.readouterr().err
    assert main(["wer-compare", "--ref", ref, a, str(FIX / "absent")]) == 1
    assert "absent: does not exist" in capsys.readouterr().err
    assert main(["wer-compare", a, b]) == 1  # texts without --ref are read as per_utt tables
    assert "not a per_utt line" in capsys.readouterr().err
