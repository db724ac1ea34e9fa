"""The command line's convention (docs/cli.md), checked on the real parser: help, examples, names, aliases."""

import argparse
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from asr_lm_quant import progress
from asr_lm_quant.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def subcommands(parser, prefix=()):
    """(name path, parser) of every subcommand, nested ones (prepare-text SOURCE) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from subcommands(sub, prefix + (name,))


PARSER = build_parser()
COMMANDS = dict(subcommands(PARSER))
LEAVES = {k: p for k, p in COMMANDS.items() if not any(isinstance(a, argparse._SubParsersAction)
                                                       for a in p._actions)}


def parse(*argv):
    return build_parser().parse_args([str(a) for a in argv])


def option_help(parser, option):
    """The help text of ``option`` as --help shows it."""
    fmt = parser._get_formatter()
    action = parser._option_string_actions[option]
    return fmt._expand_help(action) if action.help else ""


def test_every_command_is_found():
    names = {" ".join(k) for k in COMMANDS}
    for expected in ("train", "ppl", "quantize", "quant-inspect", "quant-sweep", "rescore-nbest", "rescore-lattice",
                     "decide-nbest", "lattice-info", "lattice-to-nbest", "score-kaldi", "wer", "prepare-text plain"):
        assert expected in names
    assert len(COMMANDS) >= 24


@pytest.mark.parametrize("name", sorted(" ".join(k) for k in COMMANDS))
def test_command_has_description_and_example(name):
    p = COMMANDS[tuple(name.split())]
    assert p.description and len(p.description) > 30, name
    assert p.epilog and p.epilog.startswith("Example:"), name
    example = p.epilog.splitlines()[1].strip()
    assert example.startswith(f"asr-lm-quant {name}"), example
    text = p.format_help()
    assert "\nExample:\n  asr-lm-quant " in text


@pytest.mark.parametrize("name", sorted(" ".join(k) for k in LEAVES))
def test_every_option_has_help_and_defaults_are_shown_one_way(name):
    p = LEAVES[tuple(name.split())]
    for action in p._actions:
        if action.help == argparse.SUPPRESS:
            continue
        what = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {what}: no help"
        text = p._get_formatter()._expand_help(action)
        assert "(default: None)" not in text, f"{name} {what}: {text}"
        assert text.count("(default") <= 1, f"{name} {what}: {text}"
        # One way: "(default: X)", never "(default X)" or "default %(default)s" by hand.
        assert not re.search(r"\(default(?!: )|(?<!\()default:", text), f"{name} {what}: {text}"
        if action.required and action.option_strings:
            assert text.endswith("(required)") and "(default" not in text, f"{name} {what}: {text}"
    assert "(default: None)" not in p.format_help()


def test_defaults_are_shown_where_there_is_one():
    rescore = COMMANDS[("rescore-nbest",)]
    assert option_help(rescore, "--weight").endswith("(default: 0.8)")
    assert option_help(rescore, "--nbest-size").endswith("(default: 20)")
    quantize = COMMANDS[("quantize",)]
    assert option_help(quantize, "--candidates").endswith("(default: 1,2,4,8)")
    assert option_help(quantize, "--distill").endswith("(default: 0.0)")
    assert option_help(quantize, "--admm-lr").endswith("(default: --lr)")  # described, not argparse's None
    assert option_help(quantize, "--lm-dir").endswith("(required)")
    assert "--lm-dir LM_DIR --out OUT --method" in quantize.format_usage()  # required: not bracketed


CANONICAL = {  # command -> options that must be there under their canonical names
    "train": ["--words", "--quiet"],
    "ppl": ["--lm-dir", "--tokens-per-batch", "--json", "--quiet"],
    "quantize": ["--lm-dir", "--out", "--tokens-per-batch", "--quiet"],
    "quant-inspect": ["--lm-dir", "--json"],
    "quant-sweep": ["--lm-dir", "--out", "--quiet"],
    "rescore-nbest": ["--lm-dir", "--words", "--weight", "--acwt", "--tokens-per-batch", "--nbest-size", "--json",
                      "--quiet"],
    "rescore-lattice": ["--lm-dir", "--words", "--weight", "--acwt", "--tokens-per-batch", "--json", "--quiet"],
    "decide-nbest": ["--weight", "--quiet"],
    "lattice-info": ["--acwt"],
    "lattice-to-nbest": ["--nbest-size", "--acwt", "--words", "--quiet"],
    "ngram-train": ["--words", "--json"],
    "ngram-ppl": ["--json"],
    "score-kaldi": ["--quiet"],
    "score-hub5": ["--quiet"],
    "wer": ["--json"],
    "wer-compare": ["--json"],
    "prepare-text plain": ["--words", "--quiet"],
}

ALIASES = {  # command -> (old name, canonical)
    "train": [("--vocab", "--words")],
    "ppl": [("--model", "--lm-dir")],
    "quantize": [("--model", "--lm-dir")],
    "quant-inspect": [("--model", "--lm-dir")],
    "quant-sweep": [("--model", "--lm-dir")],
    "rescore-nbest": [("--weights", "--weight"), ("--acoustic-scale", "--acwt"), ("--token-budget", "--tokens-per-batch"),
                      ("--n", "--nbest-size")],
    "rescore-lattice": [("--weights", "--weight"), ("--acoustic-scale", "--acwt"),
                        ("--token-budget", "--tokens-per-batch")],
    "decide-nbest": [("--weights", "--weight")],
    "lattice-info": [("--acoustic-scale", "--acwt")],
    "lattice-to-nbest": [("--n", "--nbest-size"), ("--acoustic-scale", "--acwt"), ("--kaldi-exact", "--keep-duplicates")],
    "ngram-train": [("--vocab", "--words")],
    "prepare-text plain": [("--vocab", "--words")],
}


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_canonical_names(name):
    p = COMMANDS[tuple(name.split())]
    text = p.format_help()
    for opt in CANONICAL[name]:
        assert opt in p._option_string_actions, f"{name}: no {opt}"
        assert re.search(rf"^  {re.escape(opt)}\b", text, re.M), f"{name}: {opt} not in --help"


@pytest.mark.parametrize("name", sorted(ALIASES))
def test_aliases_are_accepted_and_hidden(name):
    p = COMMANDS[tuple(name.split())]
    text = p.format_help()
    for old, new in ALIASES[name]:
        assert p.aliases[old] == new
        assert not re.search(rf"{re.escape(old)}(?![\w-])", text), f"{name}: {old} shown in --help"
    # No option is shown twice under two names.
    shown = [s for a in p._actions if a.help != argparse.SUPPRESS for s in a.option_strings]
    assert len(shown) == len(set(shown))


def test_aliases_give_the_same_values_as_the_canonical_names(tmp_path):
    base = ["rescore-nbest", "--lm-dir", "lm", "--nbest", "n.tsv", "--out-nbest", "o.tsv"]
    old = parse(*base, "--weights", "0.5,0.8", "--acoustic-scale=0.0833", "--token-budget", "128", "--n", "7",
                "--progress")
    new = parse(*base, "--weight", "0.5,0.8", "--acwt=0.0833", "--tokens-per-batch", "128", "--nbest-size", "7")
    assert vars(old) == vars(new)
    assert new.weight == [0.5, 0.8] and new.acwt == 0.0833 and new.token_budget == 128 and new.n == 7
    assert parse("decide-nbest", "--dev", "d", "--out", "o", "--weights", "0.5").weights == [0.5]
    conf = tmp_path / "lm.json"
    conf.write_text("{}")
    assert parse("train", "--config", conf, "--train", "t", "--vocab", "w", "--out", "o").vocab == "w"
    assert parse("ppl", "--model", "m", "--text", "t").model == "m"
    assert parse("lattice-to-nbest", "ark:x", "--n", "3", "--acoustic-scale", "0.5").n == 3
    assert parse("quant-sweep", "--systems", conf, "--model", "base=a", "--lm-dir", "deep=b", "out").model == [
        "base=a", "deep=b"]
    # An alias after "--" is a value, not an option.
    assert parse("wer-compare", "--", "--n", "b").inputs == ["--n", "b"]


def test_quantize_takes_the_model_and_output_either_way():
    for argv in (["a", "b"], ["--lm-dir", "a", "--out", "b"], ["--lm-dir", "a", "b"], ["--model", "a", "b"],
                 ["--out", "b", "a"]):
        args = parse("quantize", "--method", "ptq", *argv)
        assert (args.model, args.out) == ("a", "b"), argv
        assert not hasattr(args, "_positional")
    assert parse("quant-inspect", "q").model == parse("quant-inspect", "--lm-dir", "q").model == "q"


@pytest.mark.parametrize("argv,message", [
    (["quantize", "--method", "ptq", "a"], "the following arguments are required: --out"),
    (["quantize", "--method", "ptq"], "required: --lm-dir, --out"),
    (["quantize", "--method", "ptq", "a", "b", "c"], "unrecognized arguments: c"),
    (["quantize", "a", "b", "--method", "ptq", "--candidates", "1,x"], "--candidates: '1,x': item 'x'"),
    (["quantize", "a", "b", "--method", "ptq", "--band-edges", "10,,20"], "without empty items"),
    (["rescore-nbest", "--lm-dir", "m", "--nbest", "n", "--weight", "0.5,x"], "--weight: '0.5,x'"),
    (["decide-nbest", "--dev", "d", "--out", "o", "--lm-scales", "1:0:1"], "STOP at least START"),
    (["decide-nbest", "--dev", "d", "--out", "o", "--penalties", "1,inf"], "finite"),
    (["score-kaldi", "d", "l", "e", "--word-ins-penalty", "0.5,x"], "'x' is not a number"),
    (["ngram-train", "--text", "t", "--out", "o", "--min-counts", "0,-1"], "must be at least 0"),
    (["lattice-to-nbest", "ark:x", "--nbest-size", "0"], "must be at least 1"),
    (["ppl", "--lm-dir", "m", "--text", "t", "--tokens-per-batch", "0"], "must be at least 1"),
    (["rescore-lattice", "--lm-dir", "m", "--lattices", "l", "--out-lattices", "o", "--epsilon", "1.5"],
     "must be at most 1"),
    (["train", "--config", "no/such.json", "--train", "t", "--words", "w", "--out", "o"], "no/such.json: no such file"),
])
def test_bad_values_are_one_usage_line(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"asr-lm-quant {argv[0]}: error: ") and message in err, err


def test_bad_candidates_from_the_shell_are_one_line_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "asr_lm_quant.cli", "quantize", str(tmp_path / "lm"),
                           str(tmp_path / "q"), "--method", "ptq", "--candidates", "1,x"],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "--candidates" in proc.stderr and "'x' is not a whole number" in proc.stderr
    assert not (tmp_path / "q").exists()


def test_top_level_help_names_the_docs_and_groups_the_commands():
    text = PARSER.format_help()
    assert "docs/cli.md" in text and "README" in text
    for group in ("neural LMs:", "quantization:", "rescoring:", "scoring (WER):"):
        assert f"\n{group}\n" in text
    # Each command listed once, under its group.
    for name in ("quantize", "rescore-nbest", "wer"):
        assert len(re.findall(rf"^  {name} ", text, re.M)) == 1
    assert text.index("quantization:") < text.index("  quant-sweep ") < text.index("Kaldi lattices:")


LONG_COMMANDS = ["train", "ppl", "quantize", "quant-sweep", "rescore-nbest", "rescore-lattice", "lattice-to-nbest",
                 "decide-nbest", "score-kaldi", "score-hub5", "prepare-text plain"]


@pytest.mark.parametrize("name", LONG_COMMANDS)
def test_long_commands_take_quiet(name):
    p = COMMANDS[tuple(name.split())]
    assert "--quiet" in p._option_string_actions
    assert "--progress" in p._option_string_actions  # the old switch, hidden and harmless
    assert p._option_string_actions["--progress"].help == argparse.SUPPRESS


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bars_show_on_a_terminal_only_and_never_when_quiet():
    try:
        assert not progress.bar(range(2), file=_Terminal()).disable
        assert progress.bar(range(2), file=io.StringIO()).disable is True  # a log file, a pipe
        assert progress.bar(range(2), file=_Terminal(), enabled=False).disable is True  # e.g. not rank 0
        progress.set_quiet(True)
        assert progress.bar(range(2), file=_Terminal()).disable is True
    finally:
        progress.set_quiet(False)


def test_quiet_reaches_our_bars_and_those_of_libraries(monkeypatch):
    import asr_lm_quant.kaldi.commands as kaldi_commands
    seen = []

    def command(args):  # stands in for lattice-to-nbest's work: what would its bars do?
        seen.append((progress.bar(range(2), file=_Terminal()).disable, os.environ.get("TQDM_DISABLE")))
        return 0
    monkeypatch.setattr(kaldi_commands, "_to_nbest", command)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert main(["lattice-to-nbest", "ark:x", "--quiet"]) == 0
    assert main(["lattice-to-nbest", "ark:x"]) == 0
    # With --quiet no bar at all; without, ours follow the terminal (tqdm decides: disable None), and the
    # libraries' bars (always on by tqdm's default) are off because stderr is not a terminal here.
    assert seen == [(True, "1"), (None, "1")]
    assert "TQDM_DISABLE" not in os.environ
    assert not progress.bar(range(2), file=_Terminal()).disable  # the setting ended with the command


def test_json_dash_is_stdout_and_bare_json_still_works(tmp_path, capsys):
    ref = tmp_path / "ref"
    hyp = tmp_path / "hyp"
    ref.write_text("u1 a b c\nu2 d e\n")
    hyp.write_text("u1 a x c\nu2 d e\n")
    for flag in (["--json"], ["--json", "-"]):
        assert main(["wer", str(ref), str(hyp), *flag]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["errors"] == 1 and out["ref_words"] == 5, out
    assert main(["wer", str(ref), str(hyp), "--json", str(tmp_path / "w.json")]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads((tmp_path / "w.json").read_text())["errors"] == 1
