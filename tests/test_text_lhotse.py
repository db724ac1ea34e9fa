"""LM text from lhotse supervision manifests: the same text as the LDC route on the same (made-up) corpus.

The manifests are built here with lhotse's own classes from the fixture transcripts, as lhotse's recipes
build them (checked against the recipes' own functions below)."""

import gzip
import os
import subprocess
import json
from pathlib import Path

import pytest
from lhotse import AudioSource, MonoCut, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.kaldi import load_kaldi_data_dir

from asr_lm_quant.cli import main as cli_main
from asr_lm_quant.errors import InputError
from asr_lm_quant.text.ldc import prepare_ldc_swbd, read_dictionary, read_ms98_transcripts
from asr_lm_quant.text.lhotse_swbd import prepare_lhotse_swbd, read_swbd_supervisions

FIX = Path(__file__).parent / "fixtures" / "text" / "lhotse"
SWBD = FIX / "swb_ms98_transcriptions"
DICT = SWBD / "sw-ms98-dict.text"
FISHER = [FIX / "fe_03_p1_tran", FIX / "fe_03_p2_tran"]
EVAL2000 = FIX / "LDC2002T43"


def swbd_segments(omit_silence: bool):
    """What ``lhotse prepare switchboard`` puts in its supervisions, for the ms98 files of the fixture."""
    segments = []
    for path in sorted(SWBD.glob("*/*/*-trans.text")):
        name = path.name.split("-")[0]  # sw2010A
        recording_id = "sw0" + name[2:6]  # the recording is the audio file, sw02010.sph
        for line in path.read_text().splitlines():
            segment_id, start, end, *words = line.split()
            if omit_silence and words[0] == "[silence]":
                continue
            segments.append(SupervisionSegment(
                id=segment_id, recording_id=recording_id, start=float(start),
                duration=round(float(end) - float(start), ndigits=8), channel="AB".index(name[-1]),
                text=" ".join(words), language="English", speaker=f"{recording_id}A"))
    return segments


def fisher_segments(trans_dir):
    """What ``lhotse prepare fisher-english`` puts in its supervisions for one transcript directory."""
    segments = []
    for path in sorted((trans_dir / "data" / "trans").glob("*/*.txt")):
        lines = [line.split() for line in path.read_text().splitlines()[3:] if line.strip()]
        width = len(str(len(lines)))
        for k, (start, end, side, *words) in enumerate(lines):
            segments.append(SupervisionSegment(
                id=f"{path.stem}-{str(k).zfill(width)}", recording_id=path.stem, start=round(float(start), 3),
                duration=round(float(end) - float(start), 3), channel={"A": 0, "B": 1}[side[:-1]],
                text=" ".join(words), language="English", speaker=f"{path.stem}-{side[:-1]}"))
    return segments


def write_manifest(path, segments):
    SupervisionSet.from_segments(segments).to_file(path)
    return path


@pytest.fixture()
def manifests(tmp_path):
    return {"swbd": write_manifest(tmp_path / "swbd_supervisions_all.jsonl.gz", swbd_segments(omit_silence=False)),
            "fisher": [write_manifest(tmp_path / f"fisher_{d.name}.jsonl.gz", fisher_segments(d)) for d in FISHER]}


def lines(path):
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_fixture_manifests_are_what_lhotse_recipes_write():
    from lhotse.recipes.fisher_english import create_supervision
    from lhotse.recipes.switchboard import make_segments

    for omit_silence in (False, True):
        recipe = []
        for path in sorted(SWBD.glob("*/*/*-trans.text")):
            name = path.name.split("-")[0]
            rec = Recording(id="sw0" + name[2:6], sources=[AudioSource("file", [0, 1], "x.sph")],
                            sampling_rate=8000, num_samples=8000 * 60, duration=60.0)
            recipe += make_segments(path, rec, channel="AB".index(name[-1]), omit_silence=omit_silence)
        assert [s.to_dict() for s in swbd_segments(omit_silence)] == [s.to_dict() for s in recipe]
    for d in FISHER:
        recipe = []
        for path in sorted((d / "data" / "trans").glob("*/*.txt")):
            session = path.stem.split("_")[2]
            stem = path.stem
            recipe += create_supervision(({session: {"A": f"{stem}-A", "B": f"{stem}-B"}}, path))
        assert [s.to_dict() for s in fisher_segments(d)] == [s.to_dict() for s in recipe]
    assert any("[silence] i have" in s.text for s in swbd_segments(False))  # raw text, nothing normalised


# The LM text of the fixture, as the LDC route makes it (Kaldi's rules; see test_text_swbd for each rule).
SWBD_TRAIN = [
    "hi um-hum i'm okeydokey uh-huh",                                  # sw2010B 0.00, before ...
    "oh i like the i b m thinkpad more than cars [noise]",             # ... sw2010B 4.10 (A's first three: dev)
    "[silence] right",                                                 # Kaldi's quirk: a 2nd [silence] stays
    "[vocalized-noise] yeah [laughter]",                               # sw2010A 9.88, aside marks dropped
    "c._n._n.'s v._w.s are ex yes-",                                   # sw2010B 13.00: acronyms, ex[..]-/..]
    "my brother works for c._n._n. and he drives a ch- them",          # sw2010A 14.50
    "[laughter] yeah mine too",                                        # sw2011B 0.50 before sw2011A 1.50
    "okay let's talk about t._v.s",
    "[noise] the t._v. i have is -b- ten years old",                   # [silence] between words dropped
]
SWBD_VALID = ["[noise]", "so what kind of cars do you like to drive", "i have an old v._w. and it's ab- -autiful"]
FISHER_TEXT = [
    "hello this is anna",
    "hi [laughter] i'm bob cause my wife signed me up",
    "oh okay um-hum so the topic is non profit groups",
    "hum i'm kay with that [noise]",                                   # hesitation mapped: fields re-joined
    "well -em they're a- what good [vocalized-noise] [noise]",
    "um um yeah",
    " bye",                                                            # [[skip]] [pause] leave a leading space
    "hi i'm carol [noise] from frisco",                                # second manifest (fe_03_p2_tran)
    "[laughter] nice",
]
TEST = ["did you see the game", "yeah i know (%hesitation) what you mean", "uh-huh (( okay )) so-",
        "we're going to talk about cars"]


def test_same_text_as_the_ldc_route(tmp_path, manifests):
    ldc_out, lhotse_out = tmp_path / "ldc", tmp_path / "lm"
    ldc_stats = prepare_ldc_swbd(SWBD, ldc_out, fisher_dirs=FISHER, eval2000=EVAL2000, dev_utterances=3)
    stats = prepare_lhotse_swbd(manifests["swbd"], lhotse_out, dictionary=DICT, eval2000=EVAL2000,
                                fisher=manifests["fisher"], dev_utterances=3)
    for name in ("train.txt", "valid.txt", "test.txt", "words.txt"):
        assert (lhotse_out / name).read_bytes() == (ldc_out / name).read_bytes(), name
    assert lines(lhotse_out / "train.txt") == SWBD_TRAIN + FISHER_TEXT + SWBD_TRAIN + SWBD_TRAIN
    assert lines(lhotse_out / "valid.txt") == SWBD_VALID
    assert lines(lhotse_out / "test.txt") == TEST
    assert stats["source"] == "lhotse-swbd" and stats["inputs"]["fisher"] == [str(p) for p in manifests["fisher"]]
    for key in ("train", "valid", "test", "train_parts", "vocab_size", "acronyms", "dev_utterances"):
        assert stats[key] == ldc_stats[key], key
    assert json.loads((lhotse_out / "stats.json").read_text())["train_parts"]["fisher"]["sentences"] == 9


def test_utterance_ids_and_texts_as_kaldi_data_train(manifests):
    _, acronyms = read_dictionary(DICT)
    from_manifest = read_swbd_supervisions(manifests["swbd"], acronyms)
    from_ldc = read_ms98_transcripts(SWBD, acronyms)
    assert [(u.utt_id, u.text) for u in from_manifest] == [(u.utt_id, u.text) for u in from_ldc]
    # The end time comes back from lhotse's start + rounded duration exactly: 0.145 -> 14 centiseconds,
    # where 0.07 + 0.075 would round to 15.
    assert from_manifest[0].utt_id == "sw02010-A_000007-000014"


def test_default_omit_silence_loses_utterances_that_kaldi_keeps(tmp_path):
    _, acronyms = read_dictionary(DICT)
    default = write_manifest(tmp_path / "omitted.jsonl.gz", swbd_segments(omit_silence=True))
    kept = {u.text for u in read_swbd_supervisions(default, acronyms)}
    everything = {u.text for u in read_ms98_transcripts(SWBD, acronyms)}
    assert everything - kept == {"i have an old v._w. and it's ab- -autiful", "[silence] right"}


def test_eval2000_from_a_kaldi_data_dir_imported_by_lhotse(tmp_path, manifests):
    _, sups, _ = load_kaldi_data_dir(FIX / "kaldi_eval2000", sampling_rate=8000)
    eval2000 = tmp_path / "eval2000_supervisions.jsonl.gz"
    sups.to_file(eval2000)
    out = tmp_path / "lm"
    stats = prepare_lhotse_swbd(manifests["swbd"], out, dictionary=DICT, eval2000=eval2000, dev_utterances=3)
    assert lines(out / "test.txt") == TEST
    assert stats["inputs"]["test"] == str(eval2000)
    assert lines(out / "train.txt") == SWBD_TRAIN * 3  # no Fisher given


def test_eval2000_manifest_without_kaldi_ids_is_keyed_by_recording_and_channel(tmp_path, manifests):
    # Ids that are not Kaldi's: the conversation order comes from recording, channel and start.
    segs = [SupervisionSegment(id=f"seg{i}", recording_id=rec, start=start, duration=dur, channel=ch, text=text)
            for i, (rec, ch, start, dur, text) in enumerate([
                ("sw_4390", 0, 0.29, 2.92, "WE'RE GOING TO TALK ABOUT CARS"),
                ("en_4170", 0, 12.34, 2.51, "YEAH I KNOW (%HESITATION) WHAT YOU MEAN"),
                ("en_4170", 1, 15.61, 1.39, "UH-HUH (( OKAY )) SO-"),
                ("en_4170", 0, 20.0, 2.0, "IGNORE_TIME_SEGMENT_IN_SCORING"),
                ("en_4170", 1, 10.02, 2.38, "DID YOU SEE THE GAME")])]
    eval2000 = write_manifest(tmp_path / "e.jsonl", segs)
    out = tmp_path / "lm"
    prepare_lhotse_swbd(manifests["swbd"], out, dictionary=DICT, eval2000=eval2000, dev_utterances=3)
    assert lines(out / "test.txt") == TEST


def test_raw_lhotse_eval2000_manifest_is_refused(tmp_path, manifests):
    from lhotse.recipes.eval2000 import make_segments

    raw = write_manifest(tmp_path / "eval2000_supervisions_unnorm.jsonl.gz",
                         make_segments(EVAL2000 / "2000_hub5_eng_eval_tr" / "reference" / "english"))
    out = tmp_path / "lm"
    with pytest.raises(InputError, match=r"eval2000_supervisions_unnorm.jsonl.gz, line 2, key 'en_4170-1': text "
                                         r"has the markup of the raw LDC2002T43 transcripts"):
        prepare_lhotse_swbd(manifests["swbd"], out, dictionary=DICT, eval2000=raw, dev_utterances=3)
    assert not out.exists()


def _recordings(path):
    RecordingSet.from_recordings([Recording(id="sw02010", sources=[AudioSource("file", [0, 1], "sw02010.sph")],
                                            sampling_rate=8000, num_samples=80000, duration=10.0)]).to_file(path)


@pytest.mark.parametrize("case", ["recordings", "cuts", "not_jsonl", "bad_json", "empty", "no_text", "recording_inside",
                                  "kaldi_ids", "missing", "not_a_supervision", "start_string",
                                  "text_number", "channel_string"])
def test_bad_swbd_manifest(tmp_path, case):
    p = tmp_path / "sups.jsonl"
    seg = dict(id="sw2010A-ms98-a-0003", recording_id="sw02010", start=0.145, duration=4.1675, channel=0)
    if case == "recordings":
        _recordings(p)
        message = r"sups.jsonl: is a RecordingSet manifest, expected supervisions \(a SupervisionSet\)"
    elif case == "cuts":
        cut = MonoCut(id="c1", start=0.0, duration=1.0, channel=0)
        p.write_text(json.dumps(cut.to_dict()) + "\n")
        message = r"sups.jsonl: is a CutSet manifest"
    elif case == "not_jsonl":
        p = tmp_path / "sups.json"
        p.write_text("[]")
        message = r"sups.json: expected a lhotse supervision manifest \(.jsonl or .jsonl.gz\)"
    elif case == "bad_json":
        p.write_text('{"id": "x", "recording_id"\n')
        message = r"sups.jsonl, line 1: not a lhotse manifest \(not valid JSON"
    elif case == "empty":
        p.write_text("")
        message = r"sups.jsonl: empty manifest"
    elif case == "no_text":
        write_manifest(p, [SupervisionSegment(**seg, text="so what"),
                           SupervisionSegment(**{**seg, "id": "sw2010A-ms98-a-0004"})])
        message = r"sups.jsonl, line 2, key 'sw2010A-ms98-a-0004': supervision has no text"
    elif case == "recording_inside":
        write_manifest(p, [SupervisionSegment(**seg, text="so what")])
        _recordings(tmp_path / "r.jsonl")
        with open(p, "a") as f:
            f.write((tmp_path / "r.jsonl").read_text())
        message = r"sups.jsonl, line 2: a Recording, not a supervision segment"
    elif case == "kaldi_ids":
        write_manifest(p, [SupervisionSegment(**{**seg, "id": "sw02010-A_000014-000431"}, text="so what")])
        message = r"key 'sw02010-A_000014-000431': not an ms98 segment id .* use the kaldi-swbd source"
    elif case in ("start_string", "text_number", "channel_string"):
        field, value, message = {
            "start_string": ("start", "0.145", r"line 2, key 'sw2010A-ms98-a-0003': start is '0.145': expected a "
                                               r"finite number"),
            "text_number": ("text", 42, r"line 2, key 'sw2010A-ms98-a-0003': text is a int \(42\): expected a "
                                        r"string"),
            "channel_string": ("channel", "A", r"line 2, key 'sw2010A-ms98-a-0003': channel is 'A'")}[case]
        good = {**seg, "id": "sw2010A-ms98-a-0002", "text": "so what"}
        p.write_text(json.dumps(good) + "\n" + json.dumps({**seg, "text": "so what", field: value}) + "\n")
        message = "sups.jsonl, " + message
    elif case == "missing":
        p = tmp_path / "nowhere.jsonl.gz"
        message = r"nowhere.jsonl.gz: file does not exist"
    else:
        p.write_text('{"id": "x", "start": 0, "duration": 1, "speaker_name": "bob"}\n')
        message = r"sups.jsonl, line 1: not a lhotse manifest \(.*unexpected keyword argument 'speaker_name'"
    out = tmp_path / "lm"
    with pytest.raises(InputError, match=message):
        prepare_lhotse_swbd(p, out, dictionary=DICT, eval2000=EVAL2000, dev_utterances=1)
    assert not out.exists()


def test_fisher_supervision_without_text_fails_without_output(tmp_path, manifests):
    # The Fisher text is streamed while train.txt is written: the error still leaves no output behind.
    segs = fisher_segments(FISHER[0])
    segs[4].text = None
    bad = write_manifest(tmp_path / "fisher.jsonl.gz", segs)
    out = tmp_path / "lm"
    with pytest.raises(InputError, match=rf"fisher.jsonl.gz, line 5, key '{segs[4].id}': supervision has no text"):
        prepare_lhotse_swbd(manifests["swbd"], out, dictionary=DICT, eval2000=EVAL2000, fisher=[bad],
                            dev_utterances=3)
    assert not out.exists()


def test_cli(tmp_path, manifests, capsys):
    out = tmp_path / "lm"
    args = ["prepare-text", "lhotse-swbd", str(manifests["swbd"]), "--dictionary", str(DICT), "--eval2000",
            str(EVAL2000 / "2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm"), "--fisher",
            str(manifests["fisher"][0]), "--fisher", str(manifests["fisher"][1]), "--dev-utterances", "3",
            "--out", str(out)]
    assert cli_main(args) == 0
    assert lines(out / "train.txt") == SWBD_TRAIN + FISHER_TEXT + SWBD_TRAIN * 2
    assert json.loads(capsys.readouterr().out)["valid"]["sentences"] == 3
    assert cli_main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    recordings = tmp_path / "recs.jsonl.gz"
    _recordings(recordings)
    args[2] = str(recordings)
    assert cli_main(args + ["--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asr-lm-quant prepare-text: error: ") and "is a RecordingSet manifest" in err
    assert "Traceback" not in err
    with gzip.open(recordings, "rt") as f:  # the manifest is left as it was
        assert json.loads(f.readline())["id"] == "sw02010"


def test_prepare_lm_text_step(repo_dir, tmp_path, manifests):
    env = dict(os.environ)
    env["PATH"] = f"{repo_dir / '.venv' / 'bin'}:{repo_dir / 'steps'}:{env['PATH']}"
    p = subprocess.run([str(repo_dir / "steps" / "prepare_lm_text.sh"), "data/lm", "lhotse-swbd",
                        str(manifests["swbd"]), "--dictionary", str(DICT), "--eval2000", str(EVAL2000), "--dev-utterances", "3"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "data" / "lm"
    assert lines(out / "train.txt") == SWBD_TRAIN * 3 and lines(out / "test.txt") == TEST
    assert "27 train, 3 valid, 4 test sentences" in p.stdout
    assert (out / "log" / "prepare_text.log").read_text().startswith("# asr-lm-quant prepare-text lhotse-swbd ")
