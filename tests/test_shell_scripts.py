import os
import re
import subprocess
import time

import pytest

from conftest import REPO

PARSE = REPO / "steps" / "parse_options.sh"
RUNPL = REPO / "steps" / "run.pl"

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
stage=0
stop_stage=100
nj=4
cmd=run.pl
use_gpu=false
lm_dir="exp/lm dir"
help_message="Usage: $0 [options] <data-dir>
  --stage N   # first stage"
. {parse}
echo "stage=$stage stop_stage=$stop_stage nj=$nj cmd=$cmd use_gpu=$use_gpu lm_dir=$lm_dir"
echo "args=$#:$*"
"""


@pytest.fixture()
def script(tmp_path):
    p = tmp_path / "s.sh"
    p.write_text(SCRIPT.replace("{parse}", str(PARSE)))
    return p


def bash(script, *args, cwd=None):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, cwd=cwd)


def test_parse_defaults_and_options(script):
    r = bash(script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "stage=0 stop_stage=100 nj=4 cmd=run.pl use_gpu=false lm_dir=exp/lm dir"
    r = bash(script, "--stage", "3", "--stop-stage", "5", "--nj", "8", "--cmd", "queue.pl -l mem=4G",
             "--use-gpu", "true", "--lm-dir", "a b", "data/x", "y z")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "stage=3 stop_stage=5 nj=8 cmd=queue.pl -l mem=4G use_gpu=true lm_dir=a b", "args=2:data/x y z"]
    r = bash(script, "--stop_stage", "7")
    assert "stop_stage=7 " in r.stdout


def test_parse_config_file_then_command_line(script, tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("nj=16\nstage=2\n")
    r = bash(script, "--config", str(conf), "--stage", "9")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("stage=9 stop_stage=100 nj=16 ")
    r = bash(script, "--config", str(tmp_path / "missing.conf"))
    assert r.returncode != 0 and "missing.conf" in r.stderr


def test_parse_errors(script):
    r = bash(script, "--no-such-option", "1")
    assert r.returncode != 0
    assert "invalid option --no-such-option" in r.stderr
    assert r.stdout == ""
    r = bash(script, "--use-gpu", "yes")
    assert r.returncode != 0 and "true or false" in r.stderr


def test_parse_help(script):
    r = bash(script, "--help")
    assert r.returncode == 0
    assert "Usage: " in r.stderr and "--stage N   # first stage" in r.stderr
    assert "stage=" not in r.stdout  # the script stops after the help


def runpl(*args, cwd):
    return subprocess.run([str(RUNPL), *args], capture_output=True, text=True, cwd=cwd)


def test_runpl_single_job_log_format(tmp_path):
    r = runpl("exp/log/hello.log", "echo", "hello world", "|", "tr", "a-z", "A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "exp/log/hello.log").read_text().splitlines()
    assert lines[0] == '# echo "hello world" | tr a-z A-Z'
    assert lines[1].startswith("# Started at ")
    assert "HELLO WORLD" in lines
    assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[-2])
    assert re.fullmatch(r"# Ended \(code 0\) at .+", lines[-1])


def test_runpl_job_array_in_parallel(tmp_path):
    t0 = time.time()
    r = runpl("--max-jobs-run", "4", "JOB=1:4", "log/j.JOB.log", "sleep", "1", "&&", "echo", "job", "JOB",
              ">", "out.JOB", cwd=tmp_path)
    elapsed = time.time() - t0
    assert r.returncode == 0, r.stderr
    for j in range(1, 5):
        assert (tmp_path / f"out.{j}").read_text() == f"job {j}\n"
        assert (tmp_path / f"log/j.{j}.log").read_text().startswith(f"# sleep 1 && echo job {j} > out.{j}\n")
    assert elapsed < 3.5  # four 1-second jobs ran side by side


def test_runpl_max_jobs_run_limits_concurrency(tmp_path):
    # Each job records how many jobs were running when it started (marker files present).
    cmd = ["touch", "run.JOB", ";", "ls", "run.*", "|", "wc", "-l", ">", "seen.JOB", ";", "sleep", "0.3", ";",
           "rm", "run.JOB"]
    r = runpl("--max-jobs-run", "2", "JOB=1:5", "log/c.JOB.log", *cmd, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    seen = [int((tmp_path / f"seen.{j}").read_text()) for j in range(1, 6)]
    assert max(seen) <= 2


def test_runpl_failures_named(tmp_path):
    r = runpl("JOB=1:4", "exp/log/f.JOB.log", "test", "JOB", "-ne", "2", "&&", "test", "JOB", "-ne", "4",
              cwd=tmp_path)
    assert r.returncode == 1
    assert "2 / 4 failed, log is in exp/log/f.*.log" in r.stderr
    assert "exp/log/f.2.log" in r.stderr and "exp/log/f.4.log" in r.stderr
    assert "exp/log/f.1.log" not in r.stderr
    assert (tmp_path / "exp/log/f.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1) at ")
    assert (tmp_path / "exp/log/f.3.log").read_text().splitlines()[-1].startswith("# Ended (code 0) at ")
    r = runpl("x.log", "exit", "3", cwd=tmp_path)
    assert r.returncode == 1 and "job failed, log is in x.log" in r.stderr
    assert "# Ended (code 3) at" in (tmp_path / "x.log").read_text()


def test_runpl_usage_errors(tmp_path):
    r = runpl("JOB=1:x", "log", "true", cwd=tmp_path)
    assert r.returncode != 0 and "bad job specifier" in r.stderr
    r = runpl("only-a-log", cwd=tmp_path)
    assert r.returncode != 0 and "expected" in r.stderr


def test_runpl_works_without_venv(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    r = subprocess.run([str(RUNPL), "JOB=2:3", "l.JOB.log", "true"], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "l.2.log").exists() and (tmp_path / "l.3.log").exists()
    assert not (tmp_path / "l.1.log").exists()
