"""Readers for other recognisers' n-best lists (ESPnet, Whisper / Hugging Face, NeMo), detection, decide-nbest."""

import json
import shutil
from pathlib import Path

import pytest

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.nbest.common import cost_from_log_prob
from asr_lm_quant.nbest.formats.espnet import parse_espnet_score
from asr_lm_quant.nbest.read import detect_format, iter_groups, read_nbest, read_references, score_kind

FIX = Path(__file__).resolve().parent / "fixtures" / "nbest"
ESPNET_DEV = FIX / "espnet" / "decode_dev"
ESPNET_TEST = FIX / "espnet" / "decode_test_transducer"


def _summary(capsys):
    return json.loads(capsys.readouterr().out)


def _texts(groups):
    return {g[0].utterance: [h.text for h in g] for g in groups}


def _error(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- detection ------------------------------------------------------------------------------------------------
def test_formats_are_detected(tmp_path):
    assert detect_format(ESPNET_DEV) == "espnet"
    assert detect_format(ESPNET_DEV / "logdir") == "espnet"
    assert detect_format(ESPNET_DEV / "logdir" / "output.2") == "espnet"
    assert detect_format(FIX / "whisper_hf.jsonl") == "whisper-hf"
    assert detect_format(FIX / "whisper_sum.json") == "whisper-hf"
    assert detect_format(FIX / "nemo_beams.json") == "nemo"
    assert detect_format(FIX / "generic.json") == "generic-json"
    ours = tmp_path / "ours.jsonl"
    ours.write_text('{"utterance": "u", "rank": 1, "text": "a", "acoustic_cost": 1.0, "lm_cost": 2.0}\n')
    (tmp_path / "x.tsv").write_text("utterance\trank\ttext\tacoustic_cost\tlm_cost\n")
    assert detect_format(ours) == "ours" and detect_format(tmp_path / "x.tsv") == "ours"


def test_ambiguous_or_unknown_formats_are_errors(tmp_path):
    both = tmp_path / "both.jsonl"
    both.write_text('{"id": "u", "sequences": ["a"], "sum_logprobs": [-1], "beams": [["a", -1]]}\n')
    with pytest.raises(InputError, match=r"both.jsonl: ambiguous n-best format: line 1 fits nemo and whisper-hf"):
        detect_format(both)
    other = tmp_path / "other.jsonl"
    other.write_text('\n{"key": "u", "words": "a"}\n')
    with pytest.raises(InputError, match=r"unknown n-best format \(line 2 has key, words\)"):
        detect_format(other)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="not an n-best directory"):
        detect_format(tmp_path / "empty_dir")
    with pytest.raises(InputError, match="does not exist"):
        detect_format(tmp_path / "missing.json")
    # An explicit format decides: the ambiguous file read as NeMo (no audio_filepath, no utt_id) fails clearly.
    with pytest.raises(InputError, match="line 1: needs audio_filepath"):
        list(iter_groups(both, "nemo"))
    with pytest.raises(InputError, match="read from a directory .*ESPnet decode dir.*, not a file"):
        list(iter_groups(FIX / "nemo_beams.json", "espnet"))


def test_the_one_place_scores_become_costs():
    assert cost_from_log_prob(-4.25) == 4.25 and cost_from_log_prob(1.5) == -1.5
    assert str(cost_from_log_prob(0.0)) == "0.0"  # not -0.0 in written files


# --- ESPnet ---------------------------------------------------------------------------------------------------
def test_espnet_decode_dir_job_dirs_and_scores():
    groups = list(iter_groups(ESPNET_DEV))
    assert _texts(groups) == {"dev-001": ["i think zebra", "i think that", "i thing that"],
                              "dev-002": ["the kids know school", "the kid know school"],
                              "dev-003": ["um we mean that", "we mean that"]}
    assert [h.rank for h in groups[0]] == [1, 2, 3]
    assert [h.acoustic_cost for h in groups[0]] == [4.1023, 4.3377, 6.0012] and groups[0][0].lm_cost == 0.0
    # The logdir and one job dir hold the same (or part of the same) lists.
    assert _texts(iter_groups(ESPNET_DEV / "logdir")) == _texts(groups)
    assert list(_texts(iter_groups(ESPNET_DEV / "logdir" / "output.2"))) == ["dev-003"]
    test = list(iter_groups(ESPNET_TEST / "logdir" / "output.1", "espnet"))  # transducer: plain float scores
    assert [h.acoustic_cost for h in test[1]] == [3.015625, 3.5]
    assert read_references(ESPNET_DEV) == {}  # ESPnet keeps them in data/<set>/text


def test_espnet_score_values():
    assert parse_espnet_score("tensor(-12.3457)", "s", 1, "u") == -12.3457
    assert parse_espnet_score("tensor(-3.5000, device='cuda:0')", "s", 1, "u") == -3.5
    assert parse_espnet_score("tensor(-2.5, device='cuda:0', dtype=torch.float16)", "s", 1, "u") == -2.5
    assert parse_espnet_score("-7.25", "s", 1, "u") == -7.25
    with pytest.raises(InputError, match=r"s, line 4, key 'u': not a score: 'tensor\(x\)'"):
        parse_espnet_score("tensor(x)", "s", 4, "u")
    with pytest.raises(InputError, match="not finite"):
        parse_espnet_score("tensor(-inf)", "s", 1, "u")


def _espnet_copy(tmp_path):
    d = tmp_path / "decode"
    shutil.copytree(ESPNET_DEV, d)
    return d / "logdir" / "output.1"


def test_espnet_bad_input(tmp_path):
    job = _espnet_copy(tmp_path)
    score = job / "2best_recog" / "score"
    score.write_text("dev-001 tensor(-4.3377)\ndev-002 tensor(-5.9OO)\n")
    with pytest.raises(InputError, match=r"2best_recog/score, line 2, key 'dev-002': not a score"):
        list(iter_groups(job.parents[1]))
    score.write_text("dev-001 tensor(-4.3377)\n")  # a hypothesis without its score
    with pytest.raises(InputError, match=r"2best_recog/score, key 'dev-002': no score for this utterance \(text "
                                         r"has it on line 2\)"):
        list(iter_groups(job.parents[1]))
    score.write_text("dev-001 tensor(-4.3377)\ndev-002 tensor(-5.9)\ndev-009 tensor(-1.0)\n")
    with pytest.raises(InputError, match=r"2best_recog/text, key 'dev-009': no text for this utterance"):
        list(iter_groups(job.parents[1]))
    score.unlink()
    with pytest.raises(InputError, match=r"2best_recog/score: missing"):
        list(iter_groups(job.parents[1]))


def test_espnet_structure_errors(tmp_path):
    job = _espnet_copy(tmp_path)
    (job / "3best_recog" / "text").write_text("dev-002 the kids know a school\n")
    (job / "3best_recog" / "score").write_text("dev-002 tensor(-9.0)\n")
    (job / "2best_recog" / "text").write_text("dev-001 i think that\n")
    (job / "2best_recog" / "score").write_text("dev-001 tensor(-4.3377)\n")
    with pytest.raises(InputError, match=r"3best_recog/text, line 1, key 'dev-002': a 3-best hypothesis for an "
                                         r"utterance without a 2-best one"):
        list(iter_groups(job))
    shutil.rmtree(job / "2best_recog")
    with pytest.raises(InputError, match="2best_recog is missing"):
        list(iter_groups(job))
    (job / "1best_recog" / "text").unlink()
    shutil.rmtree(job / "3best_recog")
    with pytest.raises(InputError, match="1best_recog/text: missing.*tokenizer"):
        list(iter_groups(job))
    # The same utterance decoded by two jobs.
    d = _espnet_copy(tmp_path / "b").parent
    shutil.copytree(d / "output.2", d / "output.3")
    with pytest.raises(InputError, match=r"output.3, key 'dev-003': utterance also decoded in output.2"):
        list(iter_groups(d))


def test_decide_nbest_on_espnet_decode_dirs(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["decide-nbest", "--dev", str(ESPNET_DEV), "--dev-ref", str(FIX / "espnet" / "text_dev"),
                 "--test", str(ESPNET_TEST / "logdir" / "output.1"), "--test-ref", str(FIX / "espnet" / "text_test"),
                 "--lm-scales", "0", "--penalties", "0,0.5", "--out", str(out)]) == 0
    s = _summary(capsys)
    # Scores alone: 'zebra' wins dev-001 (1 error of 11 words) at either penalty; the first setting is kept.
    assert s["setting"]["penalty"] == 0.0 and s["dev_wer"] == pytest.approx(100 / 11) and s["test_wer"] == 0.0
    assert (out / "dev" / "text").read_text() == \
        "dev-001 i think zebra\ndev-002 the kids know school\ndev-003 um we mean that\n"
    assert (out / "test" / "text").read_text() == "test-001 they said the weather\ntest-002 we guess school\n"
    # Without references anywhere: a clear error, nothing written.
    err = _error(capsys, ["decide-nbest", "--dev", str(ESPNET_DEV), "--out", str(tmp_path / "x")])
    assert "no references" in err and not (tmp_path / "x").exists()


# --- Whisper / Hugging Face -----------------------------------------------------------------------------------
def test_whisper_hf_reader_and_score_kinds():
    refs: dict = {}
    groups = list(iter_groups(FIX / "whisper_hf.jsonl", "auto", refs))
    assert groups[0][0].words == ["I", "think,", "zebra."] and groups[0][1].acoustic_cost == 0.2205
    assert refs["dev-002"] == ["the", "kids", "know", "school"]
    assert score_kind(FIX / "whisper_hf.jsonl") == "per-token" and score_kind(FIX / "whisper_sum.json") == "total"
    assert score_kind(FIX / "nemo_beams.json") is None
    assert _texts(iter_groups(FIX / "whisper_sum.json")) == _texts(groups)


def test_decide_nbest_on_whisper_scores_per_token_or_total(tmp_path, capsys):
    base = ["--lm-scales", "0", "--penalties", "0", "--normalize", "asr"]
    assert main(["decide-nbest", "--dev", str(FIX / "whisper_hf.jsonl"), "--per-token-costs", "acoustic",
                 "--out", str(tmp_path / "avg")] + base) == 0
    s = _summary(capsys)
    # Averages times (words + 1): dev-002's shorter, right hypothesis wins (1.5 < 1.68); 'zebra' stays (1 of 11).
    assert s["dev_wer"] == pytest.approx(100 / 11)
    picked = (tmp_path / "avg" / "dev" / "text").read_text().splitlines()
    assert picked == ["dev-001 I think, zebra.", "dev-002 The kids know school.", "dev-003 Um, we mean that."]
    # The same lists as totals give the same decision without --per-token-costs.
    assert main(["decide-nbest", "--dev", str(FIX / "whisper_sum.json"), "--out", str(tmp_path / "sum")] + base) == 0
    assert _summary(capsys)["dev_wer"] == pytest.approx(100 / 11)
    assert (tmp_path / "sum" / "dev" / "text").read_text().splitlines() == picked
    # Averages read as totals would pick dev-002's longer hypothesis: refused, and so is the reverse.
    err = _error(capsys, ["decide-nbest", "--dev", str(FIX / "whisper_hf.jsonl"), "--out", str(tmp_path / "x")]
                 + base)
    assert "whisper_hf.jsonl: its scores are per-token average" in err and "--per-token-costs acoustic" in err
    err = _error(capsys, ["decide-nbest", "--dev", str(FIX / "whisper_sum.json"), "--per-token-costs", "both",
                          "--out", str(tmp_path / "y")] + base)
    assert "total log-probabilities" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("item, message", [
    ({"id": "u1", "sequences": ["a", "b"]}, "needs exactly one of sequences_scores, avg_logprobs, sum_logprobs"),
    ({"id": "u1", "sequences": ["a", "b"], "sequences_scores": [-0.1]}, "sequences_scores must be a list of 2"),
    ({"id": "u1", "sequences": ["a"], "sum_logprobs": ["-0.1"]}, r'sum_logprobs\[0\] is not a finite number: "-0.1"'),
    ({"id": "u1", "sequences": ["a"], "sum_logprobs": [True]}, r"sum_logprobs\[0\] is not a finite number: true"),
    ({"id": "u1", "sequences": ["a"], "sequences_scores": [-0.1], "length_penalty": 0.5}, "length_penalty 0.5"),
    ({"id": "u 1", "sequences": ["a"], "sum_logprobs": [-1]}, "needs an id"),
    ({"id": "u1", "sequences": [], "sum_logprobs": []}, "sequences must be a non-empty list"),
])
def test_whisper_hf_bad_input(tmp_path, item, message):
    path = tmp_path / "w.jsonl"
    path.write_text('{"id": "u0", "sequences": ["x"], "sum_logprobs": [-1.0]}\n' + json.dumps(item) + "\n")
    with pytest.raises(InputError, match=r"w.jsonl, line 2.*" + message):
        list(iter_groups(path, "whisper-hf"))


def test_whisper_hf_list_items_and_mixed_kinds(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"id": "u0", "sequences": ["x"], "sum_logprobs": [-1.0]},
                                {"id": "u1", "sequences": ["x"], "avg_logprobs": [-0.2]}]))
    with pytest.raises(InputError, match=r"w.json: item 1, key .u1.: per-token scores after total ones"):
        list(iter_groups(path))


# --- NeMo -----------------------------------------------------------------------------------------------------
def test_nemo_manifest_reader_and_decide(tmp_path, capsys):
    refs: dict = {}
    groups = list(iter_groups(FIX / "nemo_beams.json", "nemo", refs))
    assert _texts(groups)["dev-002"] == ["the kids know school", "the kid know school"]
    assert groups[0][2].acoustic_cost == 6.001 and refs["dev-003"] == ["um", "we", "mean", "that"]
    assert main(["decide-nbest", "--dev", str(FIX / "nemo_beams.json"), "--lm-scales", "0", "--penalties", "0",
                 "--out", str(tmp_path / "o")]) == 0
    assert _summary(capsys)["dev_wer"] == pytest.approx(100 / 11)
    # A word insertion penalty of 1 makes dev-003's shorter hypothesis cheaper (3.9 + 3 < 3.2 + 4): a deletion.
    assert main(["decide-nbest", "--dev", str(FIX / "nemo_beams.json"), "--nbest-format", "nemo",
                 "--lm-scales", "0", "--penalties", "1", "--out", str(tmp_path / "p")]) == 0
    assert _summary(capsys)["dev_wer"] == pytest.approx(200 / 11)
    assert "dev-003 we mean that" in (tmp_path / "p" / "dev" / "text").read_text()


@pytest.mark.parametrize("line, message", [
    ({"audio_filepath": "/a/u1.wav", "text": "a", "pred_text": "a"}, "no beams: decode with beam search"),
    ({"audio_filepath": "/a/u1.wav", "beams": [["a", None]]}, "beam 1: score is not a finite number: null"),
    ({"audio_filepath": "/a/u1.wav", "beams": [["a", "x"]]}, 'beam 1: score is not a finite number: "x"'),
    ({"audio_filepath": "/a/u1.wav", "beams": [["a", -1.0], ["b"]]}, r'beam 2 is not a \[text, score\] pair'),
    ({"audio_filepath": "/b/u0.flac", "beams": [["a", -1.0]]}, "also on line 1"),
    ({"duration": 1.0, "beams": [["a", -1.0]]}, "needs audio_filepath"),
])
def test_nemo_bad_input(tmp_path, line, message):
    path = tmp_path / "m.json"
    path.write_text('{"audio_filepath": "/a/u0.wav", "beams": [["x", -1.0]]}\n' + json.dumps(line) + "\n")
    with pytest.raises(InputError, match=r"m.json, line 2.*" + message):
        list(iter_groups(path, "nemo"))


def test_nemo_utt_id_and_json_list_refused(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{"audio_filepath": "/a/long.wav", "offset": 0, "utt_id": "seg-1", "beams": [["x", -1]]}\n'
                    '{"audio_filepath": "/a/long.wav", "offset": 5, "utt_id": "seg-2", "beams": [["y", -2]]}\n')
    assert [h.utterance for h in read_nbest(path)] == ["seg-1", "seg-2"]
    path.write_text('[{"audio_filepath": "/a/u.wav", "beams": [["x", -1]]}]')
    with pytest.raises(InputError, match="JSON lines"):
        list(iter_groups(path, "nemo"))


# --- generic JSON without ids ----------------------------------------------------------------------------------
def _whisper_shaped(n):
    """``n`` items as several published n-best corpora write them: input / score / output, no ids."""
    return [{"input": [f"word {k}", f"ward {k}"], "score": [-1.0, -2.0], "output": f"word {k}"} for k in range(n)]


def test_generic_json_items_without_ids_get_positional_ids(tmp_path):
    from asr_lm_quant.nbest.formats.generic_json import positional_id
    path = tmp_path / "hyps.json"
    path.write_text(json.dumps(_whisper_shaped(12)))
    refs = {}
    groups = list(iter_groups(path, references=refs))
    ids = [g[0].utterance for g in groups]
    assert ids == [f"utt{k:02d}" for k in range(12)]    # 12 items: two digits, in file order
    assert ids == sorted(ids) and refs["utt07"] == ["word", "7"]
    assert _texts(groups)["utt11"] == ["word 11", "ward 11"]
    assert groups[0][1].acoustic_cost == pytest.approx(2.0)
    assert positional_id(7, 1000) == "utt0007" and positional_id(7, 9) == "utt7" and positional_id(9, 10) == "utt09"
    assert [g[0].utterance for g in iter_groups(path)] == ids   # the same ids on every read
    assert detect_format(path) == "generic-json"


def test_generic_json_items_with_ids_keep_them_and_mixing_is_an_error(tmp_path):
    assert sorted(read_references(FIX / "generic.json")) == ["dev-001", "dev-002", "dev-003"]
    items = _whisper_shaped(3)
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([{**items[0], "id": "a"}] + items[1:]))
    with pytest.raises(InputError, match=r"mixed.json.*item 1 has no id .* but item 0 has one"):
        read_nbest(mixed)
    mixed.write_text(json.dumps(items[:2] + [{**items[2], "utt": "c"}]))
    with pytest.raises(InputError, match=r"item 2 has an id but item 0 has none"):
        read_nbest(mixed)


def test_decide_nbest_on_items_without_ids(tmp_path, capsys):
    path = tmp_path / "hyps.json"
    path.write_text(json.dumps(_whisper_shaped(3)))
    assert main(["decide-nbest", "--dev", str(path), "--test", str(path), "--out", str(tmp_path / "o")]) == 0
    assert _summary(capsys)["test_wer"] == 0.0
    assert (tmp_path / "o" / "test" / "text").read_text() == "utt0 word 0\nutt1 word 1\nutt2 word 2\n"


def test_ours_json_lines_carry_references(tmp_path):
    row = {"utterance": "u1", "rank": 1, "text": "a b", "acoustic_cost": 1.0, "lm_cost": 2.0}
    path = tmp_path / "r.jsonl"
    lines = [{**row, "reference": "a  c"}, {**row, "rank": 2}, {**row, "utterance": "u2"}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert read_references(path) == {"u1": ["a", "c"]}        # u2 has none: not scored, not invented
    assert [h.utterance for h in read_nbest(path)] == ["u1", "u1", "u2"]
    path.write_text("".join(json.dumps(x) + "\n" for x in [lines[0], {**lines[1], "reference": "a c"}]))
    assert read_references(path) == {"u1": ["a", "c"]}        # the same words again: fine
    path.write_text("".join(json.dumps(x) + "\n" for x in [lines[0], {**lines[1], "reference": "a d"}]))
    with pytest.raises(InputError, match=r"r.jsonl, line 2, key 'u1': a second, different reference"):
        read_references(path)
    path.write_text(json.dumps({**row, "reference": 3}) + "\n")
    with pytest.raises(InputError, match=r"line 1, key 'u1': the reference must be a string"):
        read_nbest(path)


# --- the commands ---------------------------------------------------------------------------------------------
def test_cli_errors_name_the_file_and_item(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "u1", "sequences": ["a b"], "sequences_scores": [NaN]}\n')
    err = _error(capsys, ["decide-nbest", "--dev", str(bad), "--per-token-costs", "acoustic",
                          "--out", str(tmp_path / "o")])
    assert "bad.jsonl, line 1, key 'u1': sequences_scores[0] is not a finite number" in err
    err = _error(capsys, ["decide-nbest", "--dev", str(FIX / "nemo_beams.json"), "--nbest-format", "whisper-hf",
                          "--out", str(tmp_path / "o")])
    assert "nemo_beams.json, line 1: needs exactly one of sequences_scores" in err
    assert not (tmp_path / "o").exists()


def test_step_script_passes_the_format(tmp_path):
    import os
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [str(repo / "steps/decide_nbest.sh"), "--nbest-format", "espnet", "--lm-scales", "0", "--penalties", "1",
           str(ESPNET_DEV), str(FIX / "espnet" / "text_dev"), str(ESPNET_TEST), str(FIX / "espnet" / "text_test"),
           str(tmp_path / "out")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    # Penalty 1: 'they said whether' (7.5 + 3) beats 'they said the weather' (7.25 + 4): 2 errors of 7 words.
    assert json.loads(p.stdout.splitlines()[-1])["test_wer"] == pytest.approx(200 / 7)
    assert "dev-003 we mean that" in (tmp_path / "out" / "dev" / "text").read_text()
    p = subprocess.run(cmd[:2] + ["nemo"] + cmd[3:], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "decode directory, not a file" not in p.stderr
    assert "is a directory, not a nemo n-best file" in p.stderr
