"""steps/parse_options.sh: Kaldi-style --name value options for shell scripts."""

import subprocess
import textwrap

import pytest

SCRIPT = textwrap.dedent("""\
    set -euo pipefail  # recipes run strict; the parser must not trip over unset variables
    stage=0
    stop_stage=100
    nj=4
    cmd=run.pl
    use_gpu=false
    lm_dir=exp/lm
    help_message="Usage: $0 [options] <data-dir>\\n  --stage N   first stage"
    . {parse_options} || exit 1
    echo "stage=$stage stop_stage=$stop_stage nj=$nj cmd=$cmd use_gpu=$use_gpu lm_dir=$lm_dir"
    echo "args=$# $*"
    """)


@pytest.fixture
def script(tmp_path, repo_dir):
    path = tmp_path / "recipe.sh"
    path.write_text(SCRIPT.format(parse_options=repo_dir / "steps" / "parse_options.sh"))
    return path


def run(script, *args, cwd=None):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=30)


def values(proc):
    first, second = proc.stdout.splitlines()
    return dict(kv.split("=", 1) for kv in first.split(" ") if "=" in kv), second


def test_defaults_and_positional_args(script):
    p = run(script, "data/train", "exp/x")
    assert p.returncode == 0, p.stderr
    vals, args = values(p)
    assert vals == {"stage": "0", "stop_stage": "100", "nj": "4", "cmd": "run.pl", "use_gpu": "false",
                    "lm_dir": "exp/lm"}
    assert args == "args=2 data/train exp/x"


@pytest.mark.parametrize("spelling", ["--stop-stage", "--stop_stage"])
def test_both_spellings_and_equals_form(script, spelling):
    p = run(script, "--stage", "2", spelling, "5", "--nj=8", "--lm-dir", "exp/lm 2", "--use-gpu", "true", "d")
    assert p.returncode == 0, p.stderr
    vals, args = values(p)
    assert (vals["stage"], vals["stop_stage"], vals["nj"], vals["use_gpu"]) == ("2", "5", "8", "true")
    assert "lm_dir=exp/lm 2" in p.stdout
    assert args == "args=1 d"


def test_cmd_value_with_spaces(script):
    p = run(script, "--cmd", "queue.pl --mem 4G", "x")
    assert p.returncode == 0, p.stderr
    assert "cmd=queue.pl --mem 4G " in p.stdout


def test_double_dash_ends_options(script):
    p = run(script, "--nj", "2", "--", "--stage", "x")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[1] == "args=2 --stage x"


def test_unknown_option_is_an_error(script):
    p = run(script, "--stgae", "3", "x")
    assert p.returncode != 0
    assert "invalid option --stgae" in p.stderr
    assert p.stdout == ""


def test_missing_value_is_an_error(script):
    p = run(script, "--nj")
    assert p.returncode != 0
    assert "--nj needs a value" in p.stderr


def test_boolean_option_takes_only_true_or_false(script):
    p = run(script, "--use-gpu", "yes", "x")
    assert p.returncode != 0
    assert "true or false" in p.stderr


def test_empty_cmd_is_an_error(script):
    p = run(script, "--cmd", "", "x")
    assert p.returncode != 0
    assert "empty argument to --cmd" in p.stderr


def test_help_prints_help_message_and_stops(script):
    p = run(script, "--help")
    assert p.returncode == 0
    assert p.stdout == ""
    assert p.stderr.splitlines() == ["Usage: " + str(script) + " [options] <data-dir>", "  --stage N   first stage"]
    assert run(script, "-h").stderr == p.stderr


def test_config_file_is_read_and_command_line_wins(script, tmp_path):
    conf = tmp_path / "opts.conf"
    conf.write_text("nj=16\nstage=3\n")
    p = run(script, "--config", str(conf), "--stage", "1", "x")
    assert p.returncode == 0, p.stderr
    vals, _ = values(p)
    assert (vals["nj"], vals["stage"]) == ("16", "1")
    # The config is applied first even when it comes after the option it would override.
    p = run(script, "--stage", "1", f"--config={conf}", "x")
    vals, _ = values(p)
    assert (vals["nj"], vals["stage"]) == ("16", "1")


def test_missing_config_file_is_an_error(script, tmp_path):
    p = run(script, "--config", str(tmp_path / "nope.conf"), "x")
    assert p.returncode != 0
    assert "nope.conf" in p.stderr and "does not exist" in p.stderr
