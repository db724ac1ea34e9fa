"""The Python API: the README's example runs as written (paths pointed at a tiny set-up)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from asr_lm_quant import api
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import NbestHyp, write_nbest

REPO = Path(__file__).resolve().parents[1]
from conftest import TINY as tiny  # noqa: E402


def test_readme_example_runs(tmp_path):
    t = tiny.build(tmp_path / "setup")
    write_nbest(tmp_path / "hyps.tsv", [NbestHyp("u1", 1, "i think zebra".split(), 100.0, 20.0),
                                        NbestHyp("u1", 2, "i think that".split(), 101.0, 19.0)])
    code = re.search(r"## From Python\n\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    for old, new in (("exp/lm_4bit", tmp_path / "lm4"), ("exp/lm", t["lm"]), ("hyps.tsv", tmp_path / "hyps.tsv"),
                     ("first_pass.arpa", t["arpa"])):
        code = code.replace(f'"{old}"', repr(str(new)))
    env = {}
    exec(compile(code, "README", "exec"), env)
    assert env["costs"].shape == (2,) and np.all(env["costs"] > 0)
    assert [h.words for h in env["hyps"]] == [["i", "think", "zebra"], ["i", "think", "that"]]
    assert list(env["one_best"]) == ["u1"]
    assert env["results"]["avg_bits"] == 4.0
    # The packed model scores what its dequantized form scores.
    deq = api.load_lm(tmp_path / "lm4", dequantize=True)
    assert np.allclose(env["small"].score(["i think that"]), deq.score(["i think that"]), atol=1e-4)
    with pytest.raises(InputError, match="weight 2"):
        api.rescore(tmp_path / "hyps.tsv", env["lm"], weight=2)


def test_best_gives_text_and_agrees_with_decide_nbest(tmp_path, capsys):
    from asr_lm_quant.cli import main
    from asr_lm_quant.nbest.read import read_nbest
    rows = [NbestHyp("u1", 1, "i think zebra".split(), 100.0, 20.0),
            NbestHyp("u1", 2, "i think that".split(), 101.0, 17.0),
            NbestHyp("u2", 1, "the cat sat".split(), 50.0, 9.0),
            NbestHyp("u2", 2, "the cat sat down".split(), 50.5, 9.5),
            NbestHyp("u3", 1, "hello".split(), 10.0, 3.0)]
    write_nbest(tmp_path / "dev.tsv", rows)
    (tmp_path / "ref.txt").write_text("u1 i think that\nu2 the cat sat down\nu3 hello\n")
    assert main(["decide-nbest", "--dev", str(tmp_path / "dev.tsv"), "--dev-ref", str(tmp_path / "ref.txt"),
                 "--lm-scales", "0,0.5,1,2", "--penalties=-1,0,1", "--out", str(tmp_path / "o")]) == 0
    setting = json.loads(capsys.readouterr().out)["setting"]
    picked = api.best(read_nbest(tmp_path / "dev.tsv"), lm_scale=setting["lm_scale"], penalty=setting["penalty"])
    assert picked == {"u1": "i think that", "u2": "the cat sat down", "u3": "hello"}
    written = dict(line.split(" ", 1) for line in (tmp_path / "o" / "dev" / "text").read_text().splitlines())
    assert written == picked
    # at the acoustics alone both pick rank 1
    assert api.best(rows, lm_scale=0.0) == {"u1": "i think zebra", "u2": "the cat sat", "u3": "hello"}
