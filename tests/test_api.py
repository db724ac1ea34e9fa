"""The Python API: the README's example runs as written (paths pointed at a tiny set-up)."""

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
