"""WER counts and Kaldi's report formats; sclite agreement on fixtures and random hypotheses."""

import random
from pathlib import Path

import pytest

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring import details
from asr_lm_quant.scoring.sctk import SctkMissing, find_sctk, sclite_counts
from asr_lm_quant.scoring.textfile import read_text, read_utt2spk
from asr_lm_quant.scoring.wer import kaldi_percent, score_texts, utt_counts

FIX = Path(__file__).parent / "fixtures" / "scoring"


def _sctk_or_skip():
    try:
        return find_sctk()
    except SctkMissing as e:
        pytest.skip(f"sclite comparison needs NIST SCTK: {e}")


@pytest.fixture
def fixture_texts():
    return read_text(FIX / "text"), read_text(FIX / "hyp")


def test_fixture_counts_by_hand(fixture_texts):
    ref, hyp = fixture_texts
    res = score_texts(ref, hyp)
    # Counted by hand: see the comments in tests/fixtures/scoring/README.md.
    expected = {
        "sw02001-A_000098-001156": (0, 1, 2),
        "sw02001-A_001980-002131": (0, 0, 0),
        "sw02001-B_000249-000491": (2, 0, 1),
        "sw02001-B_001056-001235": (0, 1, 1),
        "sw02005-A_000167-000294": (0, 2, 1),
        "sw02005-B_000013-000191": (1, 1, 1),
        "sw02005-B_000320-000330": (1, 0, 0),
    }
    assert {k: (u.ins, u.dels, u.subs) for k, u in res.utts.items()} == expected
    assert (res.ins, res.dels, res.subs, res.ref_words) == (4, 5, 6, 94)
    assert res.absent == 1 and res.sentences == 7 and res.sentence_errors == 6
    assert res.kaldi_report() == (
        "%WER 15.96 [ 15 / 94, 4 ins, 5 del, 6 sub ] [PARTIAL]\n"
        "%SER 85.71 [ 6 / 7 ]\n"
        "Scored 7 sentences, 1 not present in hyp.\n")


def test_modes(fixture_texts):
    ref, hyp = fixture_texts
    res = score_texts(ref, hyp, mode="all")
    assert res.absent == 1 and res.sentences == 8 and res.dels == 6 and res.ref_words == 95
    assert res.wer_line() == "%WER 16.84 [ 16 / 95, 4 ins, 6 del, 6 sub ] [PARTIAL]"
    with pytest.raises(InputError, match="sw02005-A_000800-000813"):
        score_texts(ref, hyp, mode="strict")
    full = dict(hyp)
    full["sw02005-A_000800-000813"] = ["yeah"]
    full["not-in-ref"] = ["x"]  # ignored, as compute-wer does
    assert "[PARTIAL]" not in score_texts(ref, full, mode="strict").wer_line()


def test_kaldi_and_sclite_disagree_where_they_should():
    ref, hyp = "a b c d e".split(), "d e x y z".split()
    assert utt_counts(ref, hyp) == (0, 0, 5)
    assert utt_counts(ref, hyp, sclite=True) == (3, 3, 0)


def test_percent_formatting_is_float32_like_compute_wer():
    assert kaldi_percent(5503, 42989) == "12.80"
    assert kaldi_percent(1, 3) == "33.33"
    assert kaldi_percent(2, 3) == "66.67"
    assert kaldi_percent(0, 7) == "0.00"
    assert kaldi_percent(0, 0) == "-nan"
    # 1/8 = 12.5 exactly: round-half-even of the binary value, as printf does.
    assert kaldi_percent(1, 800) == "0.12"


def test_per_utt_layout(fixture_texts):
    ref, hyp = fixture_texts
    res = score_texts(ref, hyp, align=True)
    lines = details.per_utt_text(res).splitlines()
    i = lines.index("sw02005-A_000167-000294 ref  uh-huh  so  you're  a     a     ma-  ma-  manager  or  something")
    assert lines[i + 1] == "sw02005-A_000167-000294 hyp  uh-huh  so  you're  a  manager  ***  ***  manager  or  something"
    assert lines[i + 2] == "sw02005-A_000167-000294 op      C     C     C    C     S      D    D      C      C      C    "
    assert lines[i + 3] == "sw02005-A_000167-000294 #csid 7 1 0 2"
    assert "sw02005-B_000320-000330 ref   ***" in lines
    assert "sw02005-B_000320-000330 #csid 0 0 1 0" in lines
    # The absent utterance is not aligned (align-text skips it).
    assert not any(l.startswith("sw02005-A_000800-000813") for l in lines)


def test_per_spk_and_ops_layout(fixture_texts):
    ref, hyp = fixture_texts
    res = score_texts(ref, hyp, align=True)
    spk = details.per_spk_text(res, read_utt2spk(FIX / "utt2spk")).splitlines()
    assert spk[0] == ("SPEAKER         id       #SENT      #WORD       Corr        Sub        Ins        Del"
                      "        Err      S.Err")
    assert spk[1] == ("sw02001-A       raw          2         31         28          2          0          1"
                      "          3          1")
    assert spk[2] == ("sw02001-A       sys          2         31      90.32       6.45       0.00       3.23"
                      "       9.68      50.00")
    assert spk[-2].split() == ["SUM", "raw", "7", "94", "83", "6", "4", "5", "15", "6"]
    assert spk[-1].split()[-1] == "85.71"
    with pytest.raises(InputError, match="no speaker"):
        details.per_spk_text(res, {})
    ops = details.ops_text(res).splitlines()
    assert ops[0] == "correct                a             a    4"
    dels = [l for l in ops if l.startswith("deletion")]
    assert dels == ["deletion             ma-           ***    2",
                    "deletion      [laughter]           ***    1",
                    "deletion           abso-           ***    1",
                    "deletion             and           ***    1"]
    assert ops[-1] == "substitution        wear         where    1"
    assert [l.split()[0] for l in ops] == sorted(l.split()[0] for l in ops)


def test_text_reader_errors(tmp_path):
    p = tmp_path / "text"
    p.write_text("u1 a b\nu1 c\n")
    with pytest.raises(InputError, match=r"line 2.*u1.*twice"):
        read_text(p)
    p.write_text("u1 a\n\nu2 b\n")
    with pytest.raises(InputError, match="line 2"):
        read_text(p)
    p.write_bytes(b"u1 a\nu2 \xff\n")
    with pytest.raises(InputError, match="line 2"):
        read_text(p)


def test_equals_sclite_on_fixture(fixture_texts):
    _sctk_or_skip()
    ref, hyp = fixture_texts
    sc = sclite_counts(ref, hyp)
    ours = score_texts(ref, hyp, sclite=True, mode="all")
    for k, u in ours.utts.items():
        assert (sc[k]["ins"], sc[k]["del"], sc[k]["sub"], sc[k]["words"]) == (u.ins, u.dels, u.subs, u.ref_words), k
    s = sc["__sum__"]
    assert (s["ins"], s["del"], s["sub"], s["words"], s["err"]) == (ours.ins, ours.dels, ours.subs,
                                                                     ours.ref_words, ours.errors)


@pytest.mark.parametrize("seed,vocab", [(0, 6), (1, 2), (2, 40)])
def test_equals_sclite_on_random_hypotheses(seed, vocab):
    _sctk_or_skip()
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    ref = {f"utt{i:04d}": [rng.choice(words) for _ in range(rng.randint(0, 14))] for i in range(400)}
    hyp = {}
    for k, r in ref.items():  # mostly near-misses of the reference, as real hypotheses are
        h = [w if rng.random() > 0.3 else rng.choice(words) for w in r]
        for _ in range(rng.randint(0, 3)):
            op = rng.random()
            if op < 0.5 and h:
                del h[rng.randrange(len(h))]
            else:
                h.insert(rng.randint(0, len(h)), rng.choice(words))
        hyp[k] = h
    sc = sclite_counts(ref, hyp)
    ours = score_texts(ref, hyp, sclite=True)
    mismatched = [k for k, u in ours.utts.items()
                  if (sc[k]["ins"], sc[k]["del"], sc[k]["sub"]) != (u.ins, u.dels, u.subs)]
    assert mismatched == []
    assert sc["__sum__"]["err"] == ours.errors
    # Kaldi's unit-cost count is never above sclite's weighted one.
    assert score_texts(ref, hyp).errors <= ours.errors
