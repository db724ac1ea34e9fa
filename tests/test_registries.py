"""A quantization method and an n-best format are each one file: dropped into their package, they appear in the
command line (choices, options, help) and run."""

import json
import sys
import textwrap

import pytest

import asr_lm_quant.nbest.formats as formats
import asr_lm_quant.quant.methods as methods
from asr_lm_quant.cli import build_parser, main
from conftest import TINY as tiny

TOY_METHOD = '''
"""Toy: uniform rounding whose options and record say it ran."""
from dataclasses import dataclass

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.methods import Flag, Method


@dataclass
class ToyOptions:
    label: str = "plain"
    levels_note: int = 3


def handler(ctx):
    from asr_lm_quant.quant.ptq import quantize_model
    return quantize_model(ctx.model, ctx.uniform_plan()), {"toy_label": ctx.cfg.toy.label}


def check(cfg):
    if cfg.toy.levels_note < 0:
        raise InputError(None, "levels_note must not be negative", key="toy")


METHOD = Method(name="toy", help="a toy rounding for the registry's test", cost=0.3, handler=handler, texts=(),
                config={"toy": ToyOptions}, check=check,
                flags=(Flag("--toy-label", "toy.label", "what the toy records", str),
                       Flag("--toy-levels-note", "toy.levels_note", "a number the toy checks", int)))
'''

TOY_FORMAT = '''
"""Toy: comma-separated rows ``utterance,rank,score,text`` (score: a natural-log probability)."""
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.nbest.common import cost_from_log_prob
from asr_lm_quant.nbest.formats import Format


def read(path, references):
    group = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\\n").split(",", 3)
            if len(parts) != 4:
                raise InputError(path, "expected utterance,rank,score,text", line=n)
            utt, rank, score, text = parts
            if group and group[0].utterance != utt:
                yield group
                group = []
            group.append(NbestHyp(utt, int(rank), text.split(), cost_from_log_prob(score), 0.0))
    if group:
        yield group


FORMAT = Format(name="toy-csv", help="utterance,rank,score,text rows", read=read, suffixes=(".toycsv",))
'''


def _install(monkeypatch, tmp_path, package, name, source):
    """Make ``source`` the module ``name`` of ``package`` by adding a directory to the package's path."""
    d = tmp_path / f"extra_{package.__name__.rsplit('.', 1)[-1]}"
    d.mkdir()
    (d / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(d)])
    monkeypatch.delitem(sys.modules, f"{package.__name__}.{name}", raising=False)
    package.forget()


@pytest.fixture
def toy_method(monkeypatch, tmp_path):
    _install(monkeypatch, tmp_path, methods, "toy", TOY_METHOD)
    yield
    sys.modules.pop("asr_lm_quant.quant.methods.toy", None)
    methods.forget()  # the monkeypatched path is restored after this; scan again without the toy


@pytest.fixture
def toy_format(monkeypatch, tmp_path):
    _install(monkeypatch, tmp_path, formats, "toy_csv", TOY_FORMAT)
    yield
    sys.modules.pop("asr_lm_quant.nbest.formats.toy_csv", None)
    formats.forget()


def _subparser(name):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[name]


def test_the_shipped_methods_and_formats():
    assert list(methods.all_methods()) == ["ptq", "admm", "ste", "hessian", "kl", "search"]
    assert methods.mixed_methods() == ("hessian", "kl", "search")
    assert methods.plan_trainers() == ("admm", "ste")
    assert list(formats.all_formats()) == ["espnet", "generic-json", "nemo", "ours", "whisper-hf"]


def test_a_toy_method_in_one_file_appears_in_the_cli_and_runs(toy_method, tmp_path, capsys):
    assert "toy" in methods.all_methods() and "toy" not in methods.mixed_methods()
    quantize = _subparser("quantize")
    method_arg = next(a for a in quantize._actions if a.dest == "method")
    assert "toy" in method_arg.choices
    text = quantize.format_help()
    assert "toy options:" in text and "--toy-label" in text and "a toy rounding for the registry's test" in text
    t = tiny.build(tmp_path / "setup")
    out = tmp_path / "q"
    assert main(["quantize", str(t["lm"]), str(out), "--method", "toy", "--bits", "4",
                 "--toy-label", "hello"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "toy" and res["avg_bits"] == 4.0 and res["record"] == {"toy_label": "hello"}
    config = json.loads((out / "quant_config.json").read_text())
    assert config["toy"] == {"label": "hello", "levels_note": 3} and "admm" in config
    # Its check runs with the others: a bad value is refused before the model is loaded.
    assert main(["quantize", str(t["lm"]), str(tmp_path / "q2"), "--method", "toy", "--bits", "4",
                 "--toy-levels-note", "-1"]) == 1
    assert "levels_note must not be negative" in capsys.readouterr().err and not (tmp_path / "q2").exists()
    # The sweep orders it by its declared cost.
    from asr_lm_quant.quant.sweep import _cost
    size = sum(p.stat().st_size for p in t["lm"].glob("*.safetensors"))
    assert _cost("toy", t["lm"]) == pytest.approx(0.3 * size)


def test_without_the_toy_the_method_is_unknown(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["quantize", "m", str(tmp_path / "q"), "--method", "toy", "--bits", "4"])
    assert "invalid choice: 'toy'" in capsys.readouterr().err


def test_a_toy_format_in_one_file_appears_in_the_cli_and_is_read(toy_format, tmp_path, capsys):
    from asr_lm_quant.nbest.read import detect_format, read_nbest
    for command in ("rescore-nbest", "decide-nbest"):
        p = _subparser(command)
        arg = next(a for a in p._actions if a.dest == "nbest_format")
        assert "toy-csv" in arg.choices and "toy-csv (utterance,rank,score,text rows)" in arg.help
    dev = tmp_path / "dev.toycsv"
    # the recogniser's scores prefer the wrong hypothesis of u2 only by a little; the reference says which
    dev.write_text("u1,1,-1.0,the cat\nu1,2,-3.0,a cat\nu2,1,-2.0,the hat\nu2,2,-2.5,the cat\n")
    assert detect_format(dev) == "toy-csv"
    hyps = read_nbest(dev)
    assert [(h.utterance, h.rank, h.text, h.acoustic_cost) for h in hyps][:2] == [("u1", 1, "the cat", 1.0),
                                                                                ("u1", 2, "a cat", 3.0)]
    (tmp_path / "ref.txt").write_text("u1 the cat\nu2 the hat\n")
    assert main(["decide-nbest", "--dev", str(dev), "--dev-ref", str(tmp_path / "ref.txt"),
                 "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "dev" / "text").read_text() == "u1 the cat\nu2 the hat\n"
    assert json.loads(capsys.readouterr().out)["dev_wer"] == 0.0
