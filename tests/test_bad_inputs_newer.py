"""Bad inputs on the newer surfaces: old-LM kinds, pipes into archives, Kaldi model imports, lhotse-free JSON
inputs (quant-sweep systems files), scoring (best path and MBR), decide-nbest, and the Kaldi users' paths
(pipes and FIFOs, utt2spk, disambiguation symbols, an interrupted rescoring).

Each failure: one line naming the file (and key or line) and what is wrong, non-zero status, no traceback, no
output left behind."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from asr_lm_quant.cli import main
from asr_lm_quant.kaldi.archive import write_lattices
from asr_lm_quant.kaldi.lattice import Lattice
from conftest import REPO, TINY as tiny, fails

HEADER = "utterance\trank\ttext\tacoustic_cost\tlm_cost\n"


@pytest.fixture(scope="module")
def t(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("bad_newer"))


# --- old LMs of every kind -----------------------------------------------------------------------------------
def test_bad_old_lms_of_every_kind(t, tmp_path, capsys):
    kaldilm = pytest.importorskip("kaldilm")
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(t["words"], good / "words.txt")
    kaldilm.arpa2fst(str(t["arpa"]), str(good / "G.fst"), disambig_symbol="#0", read_symbol_table=str(t["words"]))
    cases = []
    d = tmp_path / "cut"
    d.mkdir()
    shutil.copy(t["words"], d / "words.txt")
    (d / "G.fst").write_bytes((good / "G.fst").read_bytes()[:200])
    cases.append((d / "G.fst", ["cut/G.fst", "truncated FST"]))
    d = tmp_path / "carpa"
    d.mkdir()
    shutil.copy(t["words"], d / "words.txt")
    (d / "G.carpa").write_bytes(b"\0B<ConstArpaLm> garbage")
    cases.append((d, ["carpa/G.carpa"]))
    d = tmp_path / "nolm"
    d.mkdir()
    cases.append((d, ["nolm", "neither G.carpa nor G.fst"]))
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=zz\n")
    cases.append((tmp_path / "bad.arpa", ["bad.arpa"]))
    for lm, expect in cases:
        for cmd in (["rescore-nbest", "--n", "2", "--out-nbest", tmp_path / "o.tsv"],
                    ["rescore-lattice", "--out-lattices", f"ark:{tmp_path}/o.ark"]):
            fails(capsys, [*cmd, "--old-lm", lm, "--lm-dir", t["lm"], "--words", t["words"], "--lattices",
                           f"ark:gunzip -c {t['decode']}/lat.1.gz|", "--json", tmp_path / "s.json"], *expect)
            assert not (tmp_path / "o.tsv").exists() and not (tmp_path / "o.ark").exists()
            assert not (tmp_path / "s.json").exists()
        fails(capsys, ["old-lm", lm, "--open", "--text", tiny.CORPUS], *expect)
    fails(capsys, ["old-lm", good / "G.fst", "--use-phi", "perhaps"], "--use-phi", "perhaps")


# --- archives through pipes ----------------------------------------------------------------------------------
def test_bit_flip_inside_gzip_through_a_pipe_rspecifier(t, tmp_path, capsys):
    data = bytearray((t["decode"] / "lat.1.gz").read_bytes())
    data[len(data) // 2] ^= 0x10
    bad = tmp_path / "lat.1.gz"
    bad.write_bytes(bytes(data))
    try:  # the flip must really corrupt the deflate stream for this test to mean anything
        gzip.decompress(bytes(data))
        pytest.skip("this bit flip happens to leave valid gzip data")
    except Exception:
        pass
    for argv in (["lattice-copy", f"ark:gunzip -c {bad}|", f"ark:{tmp_path}/o.ark"],
                 ["rescore-nbest", "--old-lm", t["arpa"], "--lm-dir", t["lm"], "--words", t["words"],
                  "--lattices", f"ark:gunzip -c {bad}|", "--out-nbest", tmp_path / "o.tsv"]):
        fails(capsys, argv, "lat.1.gz")
    assert not (tmp_path / "o.ark").exists() and not (tmp_path / "o.tsv").exists()


def test_an_empty_lattice_split_is_rescored_to_nothing(t, tmp_path):
    empty = tmp_path / "lat.3.gz"
    empty.write_bytes(gzip.compress(b""))
    assert main(["rescore-nbest", "--old-lm", str(t["arpa"]), "--lm-dir", str(t["lm"]), "--words", str(t["words"]),
                 "--lattices", f"ark:gunzip -c {empty}|", "--out-nbest", str(tmp_path / "o.tsv"), "--json",
                 str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "o.tsv").read_text() == HEADER
    assert json.loads((tmp_path / "s.json").read_text())["utterances"] == 0


# --- import-kaldi, both models -------------------------------------------------------------------------------
def _transformer_sd():
    from test_lm_kaldi_import import KaldiTransformerModel
    torch.manual_seed(0)
    return KaldiTransformerModel(4, 8, 2, 8, 1).eval().state_dict()


def _lstm_sd():
    from test_lm_lstm import KaldiRNNModel
    torch.manual_seed(0)
    return KaldiRNNModel(4, 8, 8, 1, dropout=0.0, tie_weights=False).eval().state_dict()


@pytest.mark.parametrize("model,case,expect", [
    ("Transformer", "zero_bytes", "cannot read as a weights-only state_dict"),
    ("Transformer", "empty_dict", "no 'encoder.weight'"),
    ("Transformer", "int_encoder", "entry 'encoder.weight' is a int, not a tensor"),
    ("Transformer", "1d_encoder", "tensor encoder.weight has shape [32]"),
    ("Transformer", "no_linear1", "no tensor transformer_encoder.layers.0.linear1.weight"),
    ("Transformer", "1d_linear2", "tensor transformer_encoder.layers.0.linear2.weight has shape [64]"),
    ("Transformer", "wrong_norm", "tensor transformer_encoder.layers.0.norm1.weight has shape [3]"),
    ("Transformer", "int_tensor", "has dtype torch.int64"),
    ("LSTM", "1d_recurrent", "tensor rnn.weight_hh_l0 has shape [256]"),
    ("LSTM", "1d_encoder", "tensor encoder.weight has shape [32]"),
    ("LSTM", "wrong_bias", "tensor rnn.bias_ih_l0 has shape [5]"),
])
def test_import_kaldi_malformed_state_dicts(tmp_path, capsys, model, case, expect):
    sd = _transformer_sd() if model == "Transformer" else _lstm_sd()
    pt = tmp_path / "model.pt"
    if case == "zero_bytes":
        pt.write_bytes(b"")
    else:
        if case == "empty_dict":
            sd = {}
        elif case == "int_encoder":
            sd["encoder.weight"] = 3
        elif case == "1d_encoder":
            sd["encoder.weight"] = sd["encoder.weight"].flatten()
        elif case == "no_linear1":
            del sd["transformer_encoder.layers.0.linear1.weight"]
        elif case == "1d_linear2":
            sd["transformer_encoder.layers.0.linear2.weight"] = sd["transformer_encoder.layers.0.linear2.weight"].flatten()
        elif case == "wrong_norm":
            sd["transformer_encoder.layers.0.norm1.weight"] = torch.ones(3)
        elif case == "int_tensor":
            sd["decoder.bias"] = torch.zeros(4, dtype=torch.int64)
        elif case == "1d_recurrent":
            sd["rnn.weight_hh_l0"] = sd["rnn.weight_hh_l0"].flatten()
        elif case == "wrong_bias":
            sd["rnn.bias_ih_l0"] = torch.zeros(5)
        torch.save(sd, pt)
    (tmp_path / "words.txt").write_text("<s> 0\n<unk> 1\nx 2\ny 3\n")
    out = tmp_path / "lm"
    fails(capsys, ["import-kaldi", "--model", model, "--model-pt", pt, "--words", tmp_path / "words.txt", "--out",
                   out, "--nhead", "2"], "model.pt", expect)
    assert not out.exists()


# --- quant-sweep systems files and quantize options ---------------------------------------------------------
@pytest.mark.parametrize("conf,expect", [
    ({"systems": [{"name": ["a"], "method": "fp"}]}, "system name ['a'] is a list: expected a string"),
    ({"systems": [{"name": 7, "method": "fp"}]}, "system name 7 is a number: expected a string"),
    ({"systems": [{"name": "a", "method": 4}]}, "method 4 is a number"),
    ({"models": ["exp/lm"], "systems": [{"name": "a", "method": "fp"}]}, "'models' is a list: expected an object"),
    ({"defaults": "x", "systems": [{"name": "a", "method": "fp"}]}, "'defaults' is a string: expected an object"),
    ({"models": {"base": 3}, "systems": [{"name": "a", "method": "fp"}]}, "model 'base' is 3"),
    ({"systems": [{"name": "a", "method": "fp", "model": ["x"]}]}, "'model' ['x'] is a list"),
    ({"systems": [{"name": "..", "method": "fp"}]}, "it names a directory"),
])
def test_quant_sweep_systems_file_types(t, tmp_path, capsys, conf, expect):
    p = tmp_path / "systems.json"
    p.write_text(json.dumps(conf))
    fails(capsys, ["quant-sweep", "--systems", p, "--model", f"base={t['lm']}", "--train", tiny.CORPUS, "--valid",
                   tiny.CORPUS, tmp_path / "out"], "systems.json", expect)
    assert not (tmp_path / "out").exists()


def test_quantize_candidates_not_numbers(t, tmp_path, capsys):
    """A usage error: argparse's one line (exit 2), naming the option and the bad item; nothing written."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in ["quantize", t["lm"], tmp_path / "q", "--method", "search", "--candidates", "1,x",
                               "--train", tiny.CORPUS, "--valid", tiny.CORPUS]])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert "argument --candidates: '1,x': item 'x' is not a whole number" in err
    assert not (tmp_path / "q").exists()


# --- scoring: best path and MBR -------------------------------------------------------------------------------
def _decode_dir(tmp_path, t, lattices):
    d = tmp_path / "decode"
    d.mkdir()
    write_lattices(f"ark:| gzip -c > {d}/lat.1.gz", lattices)
    (d / "num_jobs").write_text("1\n")
    return d


@pytest.mark.parametrize("mbr", [False, True])
@pytest.mark.parametrize("case", ["ids_match_nothing", "cyclic", "garbage"])
def test_score_kaldi_failure_leaves_no_scoring_dir(t, tmp_path, capsys, case, mbr):
    line = Lattice.from_arcs([(0, 1, 1, 1, 1.0, 1.0, [1, 1])], {1: (0.0, 0.0, [])})
    if case == "ids_match_nothing":
        d = _decode_dir(tmp_path, t, [("nobody", line)])
        expect = "none of its 1 utterances is in the reference text"
    elif case == "cyclic":
        cyc = Lattice.from_arcs([(0, 1, 1, 1, 1.0, 1.0, [1]), (1, 0, 2, 2, 1.0, 1.0, [1])], {1: (0.0, 0.0, [])})
        d = _decode_dir(tmp_path, t, [(t["utts"][0], cyc)])
        expect = "cycl"
    else:
        d = tmp_path / "decode"
        d.mkdir()
        (d / "lat.1.gz").write_bytes(gzip.compress(b"utt0 \0Bgarbage"))
        (d / "num_jobs").write_text("1\n")
        expect = "lat.1.gz"
    argv = ["score-kaldi", t["data"], t["words"], d, "--min-lmwt", "9", "--max-lmwt", "10"]
    fails(capsys, argv + (["--decode-mbr"] if mbr else []), expect)
    assert not (d / "scoring_kaldi").exists() and not list(d.glob("wer_*")) and not list(d.glob(".scoring*"))


def test_score_kaldi_needs_no_utt2spk(t, tmp_path, caplog):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(t["data"] / "text", data / "text")
    (data / "utt2spk").write_text(f"{t['utts'][0]} spk1\n")  # covers one utterance of six
    d = tmp_path / "decode"
    shutil.copytree(t["decode"], d)
    with caplog.at_level("WARNING"):
        assert main(["score-kaldi", str(data), str(t["words"]), str(d), "--min-lmwt", "9", "--max-lmwt", "9"]) == 0
    assert "utt2spk has no speaker for 5 of 6" in caplog.text
    assert (d / "scoring_kaldi/wer_details/per_utt").exists()
    assert not (d / "scoring_kaldi/wer_details/per_spk").exists()


# --- decide-nbest --------------------------------------------------------------------------------------------
def _nbest(path, utts):
    path.write_text(HEADER + "".join(f"{u}\t{r}\t{w}\t{10.0 * r}\t{5.0}\n" for u in utts
                                     for r, w in ((1, "a b"), (2, "a c"))))


def test_decide_nbest_says_how_many_have_no_reference(tmp_path, capsys, caplog):
    _nbest(tmp_path / "dev.tsv", [f"u{i}" for i in range(8)])
    (tmp_path / "ref").write_text("".join(f"u{i} a b\n" for i in range(4)))
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert main(["decide-nbest", "--dev", str(tmp_path / "dev.tsv"), "--dev-ref", str(tmp_path / "ref"),
                     "--lm-scales", "1", "--penalties", "0", "--out", str(out)]) == 0
    err = caplog.text
    assert "dev.tsv: 4 of 8 utterances have no reference in " in err and "ref (e.g. 'u4')" in err
    total = json.loads((out / "decision.json").read_text())["dev"]["total"]
    assert total["utterances"] == 4 and total["not_scored"] == 4
    (tmp_path / "other").write_text("x1 a b\n")
    fails(capsys, ["decide-nbest", "--dev", tmp_path / "dev.tsv", "--dev-ref", tmp_path / "other", "--lm-scales",
                   "1", "--penalties", "0", "--out", tmp_path / "out2"],
          "dev.tsv", "none of the 8 utterances of the n-best list is in the reference text", "other")
    assert not (tmp_path / "out2").exists()


# --- the Kaldi users' paths -----------------------------------------------------------------------------------
def test_ngram_train_vocab_keeps_a_word_starting_with_hash(tmp_path):
    (tmp_path / "words.txt").write_text("<eps> 0\n# 1\n#hash 2\nthe 3\ncat 4\n<unk> 5\n#0 6\n#12 7\n<s> 8\n</s> 9\n")
    (tmp_path / "text").write_text("the # cat\n#hash the cat\n#0 the cat\n")
    assert main(["ngram-train", "--text", str(tmp_path / "text"), "--out", str(tmp_path / "lm.arpa"), "--vocab",
                 str(tmp_path / "words.txt"), "--json", str(tmp_path / "s.json")]) == 0
    unigrams = {line.split("\t")[1] for line in (tmp_path / "lm.arpa").read_text().split("\\2-grams:")[0]
                .splitlines() if line.count("\t") >= 1}
    assert {"#", "#hash", "the", "cat", "<unk>"} <= unigrams and "#0" not in unigrams and "#12" not in unigrams
    assert json.loads((tmp_path / "s.json").read_text())["oov_mapped_to_unk"] == 1  # only #0


def test_inputs_read_once_come_from_fifos_and_stdin(t, tmp_path):
    fifo = tmp_path / "sents"
    os.mkfifo(fifo)
    text = "i like the dog\nthe dog\n"

    def feed():
        with open(fifo, "w") as f:
            f.write(text)
    th = threading.Thread(target=feed)
    th.start()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-m", "asr_lm_quant.cli", "old-lm", str(t["arpa"]), "--text", str(fifo)],
                         capture_output=True, text=True, env=env)
    th.join()
    assert res.returncode == 0, res.stderr
    assert [x.split("\t")[1] for x in res.stdout.splitlines()[1:]] == ["i like the dog", "the dog"]
    res = subprocess.run([sys.executable, "-m", "asr_lm_quant.cli", "ngram-ppl", "--lm", str(t["arpa"]), "--text",
                          "-"], input=text, capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["sentences"] == 2
    res = subprocess.run(["bash", "-c", f"{sys.executable} -m asr_lm_quant.cli ngram-train --text <(printf "
                                        f"'a b\\nb a\\n') --out {tmp_path}/x.arpa"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "x.arpa").read_text().startswith("\\data\\")


def test_sigint_during_rescoring_leaves_no_output(t, tmp_path):
    """Ctrl-C in the middle of rescoring: a non-zero exit, no traceback, none of the outputs in place."""
    lats = []
    from asr_lm_quant.kaldi.archive import read_lattices
    for _ in range(40):  # enough work to be interrupted in
        lats += [(f"{k}-{len(lats)}", lat) for k, lat in read_lattices(f"ark:gunzip -c {t['decode']}/lat.1.gz|")]
    write_lattices(f"ark:{tmp_path}/big.ark", lats)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "o.tsv"
    p = subprocess.Popen([sys.executable, "-m", "asr_lm_quant.cli", "rescore-nbest", "--old-lm", str(t["arpa"]),
                          "--lm-dir", str(t["lm"]), "--words", str(t["words"]), "--lattices", f"ark:{tmp_path}/big.ark",
                          "--n", "50", "--out-nbest", str(out), "--out-lattices", f"ark:{tmp_path}/o.ark",
                          "--json", str(tmp_path / "s.json")], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".o.tsv*")) and not list(tmp_path.glob("*.tmp*")) and p.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if p.poll() is not None:
        pytest.skip("rescoring finished before it could be interrupted")
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode != 0
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "o.ark").exists() and not (tmp_path / "s.json").exists()
    assert not [x for x in tmp_path.iterdir() if x.name not in ("big.ark",)], list(tmp_path.iterdir())


# --- --hf-lm and wer-compare ---------------------------------------------------------------------------------
def test_bad_hf_lm_dirs(tmp_path, capsys):
    (tmp_path / "n.tsv").write_text(HEADER + "u1\t1\ta b\t1\t2\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "badcfg").mkdir()
    (tmp_path / "badcfg" / "config.json").write_text('{"model_type": 3')
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text('{"model_type": "gpt2"}')
    for d, expect in (("missing", "does not exist"), ("empty", "no config.json"), ("badcfg", "badcfg"),
                      ("noweights", "noweights")):
        fails(capsys, ["rescore-nbest", "--hf-lm", tmp_path / d, "--nbest", tmp_path / "n.tsv", "--out-nbest",
                       tmp_path / "o.tsv", "--json", tmp_path / "s.json"], d, expect)
        assert not (tmp_path / "o.tsv").exists() and not (tmp_path / "s.json").exists()


def test_bad_wer_compare_inputs(tmp_path, capsys):
    (tmp_path / "ref").write_text("u1 a b\n")
    (tmp_path / "h1").write_text("u1 a\n")
    (tmp_path / "h2").write_bytes(b"\xff\xfe\n")
    (tmp_path / "dir").mkdir()
    for other, expect in (("h2", "not valid UTF-8"), ("missing", "does not exist"), ("dir", "is a directory")):
        fails(capsys, ["wer-compare", tmp_path / "h1", tmp_path / other, "--ref", tmp_path / "ref", "--json",
                       tmp_path / "c.json"], other, expect)
        assert not (tmp_path / "c.json").exists()


# --- step scripts: the toolkit's interpreter ------------------------------------------------------------------
def test_step_scripts_stop_with_one_line_without_the_toolkit(tmp_path):
    """No asr-lm-quant on PATH, no .venv beside steps/, and a python3 without the toolkit: one line saying what
    to source, before any job (not ModuleNotFoundError deep in a log)."""
    steps = tmp_path / "toolkit" / "steps"
    shutil.copytree(REPO / "steps", steps)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    for script, args in (("score_kaldi.sh", ["data", "lang", "decode"]),
                         ("lmrescore_nbest.sh", ["old.arpa", "lm", "data", "in", "out"]),
                         ("decide_nbest.sh", ["dev.tsv", "dev_text", "test.tsv", "-", "out"])):
        res = subprocess.run(["bash", str(steps / script), *args], capture_output=True, text=True, env=env,
                             cwd=tmp_path)
        assert res.returncode == 1, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "toolkit's Python environment is not found" in lines[0], res.stderr
        assert "path.sh" in lines[0]
        assert not (tmp_path / "out").exists() and not (tmp_path / "decode").exists()


def test_step_scripts_find_the_projects_venv(tmp_path):
    """asr-lm-quant not on PATH: the .venv beside steps/ runs the step (its own checks speak, not Python's)."""
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv in the checkout")
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    (tmp_path / "data").mkdir()
    res = subprocess.run(["bash", str(REPO / "steps" / "score_kaldi.sh"), "data", "lang", "decode"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 1 and "no such file lang/words.txt" in res.stderr, res.stderr


# --- every n-best format: fields of the wrong type ------------------------------------------------------------
def _paths(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield path + (k,)
            yield from _paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield path + (i,)
            yield from _paths(v, path + (i,))


@pytest.mark.parametrize("name,fmt", [("generic.json", "generic-json"), ("nemo_beams.json", "nemo"),
                                      ("whisper_sum.json", "whisper-hf"), ("whisper_hf.jsonl", "whisper-hf")])
def test_nbest_formats_with_fields_of_the_wrong_type_give_input_errors(tmp_path, name, fmt):
    """Every field of the first record (and of its first items) replaced by each JSON type in turn: reading
    either succeeds or ends in an InputError naming the file, never another exception."""
    import copy

    from asr_lm_quant.errors import InputError
    from asr_lm_quant.nbest.read import read_nbest
    text = (REPO / "tests/fixtures/nbest" / name).read_text()
    lines = name.endswith(".jsonl") or (text.lstrip().startswith("{") and "\n{" in text)
    docs = [json.loads(x) for x in text.splitlines() if x.strip()] if lines else [json.loads(text)]
    tried = 0
    for where in _paths(docs[0]):
        for value in (3, "x", None, [1, 2], {"a": 1}, True):
            bad = copy.deepcopy(docs)
            node = bad[0]
            for step in where[:-1]:
                node = node[step]
            node[where[-1]] = value
            p = tmp_path / name
            p.write_text("\n".join(json.dumps(d) for d in bad) + "\n" if lines else json.dumps(bad[0]))
            try:
                read_nbest(p, fmt)
            except InputError as e:
                assert name in str(e)
            tried += 1
    assert tried > 30
