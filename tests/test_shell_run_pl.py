"""steps/run.pl: Kaldi-compatible local parallel job runner."""

import os
import re
import subprocess

import pytest


@pytest.fixture
def run_pl(repo_dir):
    return str(repo_dir / "steps" / "run.pl")


def run(run_pl, *args, cwd):
    # Called directly: the #! line must work without the project's virtual environment.
    return subprocess.run([run_pl, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


LOG_END = re.compile(r"^# Accounting: time=\d+ threads=1\n# Ended \(code (\d+)\) at .+, elapsed time \d+ seconds\n\Z",
                     re.M)


def test_array_job_substitutes_job_and_writes_logs(run_pl, tmp_path):
    p = run(run_pl, "JOB=1:3", "exp/log/hello.JOB.log", "echo", "job", "JOB", ">", "out.JOB.txt", "&&",
            "echo", "to-log-JOB", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"job {i}\n"
        log = (tmp_path / "exp" / "log" / f"hello.{i}.log").read_text()
        lines = log.splitlines()
        assert lines[0] == f"# echo job {i} > out.{i}.txt && echo to-log-{i}"
        assert lines[1].startswith("# Started at ")
        assert f"to-log-{i}" in lines
        m = LOG_END.search(log)
        assert m and m.group(1) == "0"


def test_single_job_and_argument_quoting(run_pl, tmp_path):
    # An argument with spaces stays one argument; one without is handed to bash as is (a pipe works).
    p = run(run_pl, "log/one.log", "printf", "%s,", "a b", "c", "|", "tr", "a", "A", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    log = (tmp_path / "log" / "one.log").read_text()
    assert log.splitlines()[0] == "# printf %s, \"a b\" c | tr a A"
    assert "A b,c," in log


def test_stderr_goes_to_the_log(run_pl, tmp_path):
    p = run(run_pl, "log/e.log", "echo oops 1>&2", cwd=tmp_path)
    # "echo oops 1>&2" has spaces: quoted, so bash looks for a command of that name and fails.
    assert p.returncode == 1
    p = run(run_pl, "log/e.log", "echo", "oops", "1>&2", cwd=tmp_path)
    assert p.returncode == 0
    assert "oops" in (tmp_path / "log" / "e.log").read_text()


def test_failures_are_reported_with_their_logs(run_pl, tmp_path):
    p = run(run_pl, "JOB=1:4", "log/t.JOB.log", "test", "JOB", "-ne", "2", "&&", "test", "JOB", "-ne", "4",
            cwd=tmp_path)
    assert p.returncode == 1
    assert "2 / 4 failed, log is in log/t.*.log" in p.stderr
    assert "log/t.2.log" in p.stderr and "log/t.4.log" in p.stderr
    assert "log/t.1.log" not in p.stderr and "log/t.3.log" not in p.stderr
    assert LOG_END.search((tmp_path / "log" / "t.2.log").read_text()).group(1) == "1"
    assert LOG_END.search((tmp_path / "log" / "t.1.log").read_text()).group(1) == "0"


def test_exit_code_is_recorded(run_pl, tmp_path):
    p = run(run_pl, "log/x.log", "exit", "3", cwd=tmp_path)
    assert p.returncode == 1
    assert "job failed, log is in log/x.log" in p.stderr
    assert LOG_END.search((tmp_path / "log" / "x.log").read_text()).group(1) == "3"


def test_jobs_run_in_parallel_and_max_jobs_run_limits_them(run_pl, tmp_path):
    # Each job records how many jobs were running when it started (marker files in a shared dir).
    # No wall-clock assertions: the machine may be busy.
    body = ["mkdir", "-p", "m", "&&", "touch", "m/JOB", "&&", "ls", "m", "|", "wc", "-l", ">", "seen.JOB",
            "&&", "sleep", "1", "&&", "rm", "m/JOB"]
    assert run(run_pl, "--max-jobs-run", "4", "JOB=1:4", "log/p.JOB.log", *body, cwd=tmp_path).returncode == 0
    assert max(int((tmp_path / f"seen.{i}").read_text()) for i in range(1, 5)) >= 2
    assert run(run_pl, "--max-jobs-run", "1", "JOB=1:4", "log/p.JOB.log", *body, cwd=tmp_path).returncode == 0
    assert {int((tmp_path / f"seen.{i}").read_text()) for i in range(1, 5)} == {1}


def test_queue_options_are_accepted_and_ignored(run_pl, tmp_path):
    p = run(run_pl, "--mem", "4G", "--num-threads", "2", "--gpu", "0", "-V", "JOB=2:3", "log/q.JOB.log",
            "echo", "JOB", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "log").iterdir()) == ["q.2.log", "q.3.log"]


@pytest.mark.parametrize("args, message", [
    (["JOB=1:3", "log/nojob.log", "true"], "does not contain JOB"),
    (["JOB=3:1", "log/x.JOB.log", "true"], "empty job range"),
    (["JOB=a:b", "log/x.JOB.log", "true"], "bad job specifier"),
    (["--max-jobs-run", "0", "log/x.log", "true"], "positive integer"),
    (["log/x.log"], "Usage"),
])
def test_usage_errors(run_pl, tmp_path, args, message):
    p = run(run_pl, *args, cwd=tmp_path)
    assert p.returncode != 0
    assert message in p.stderr


def test_help(run_pl, tmp_path):
    p = run(run_pl, "--help", cwd=tmp_path)
    assert p.returncode == 0
    assert "JOB=1:N" in p.stdout and "--max-jobs-run" in p.stdout


def test_works_without_the_virtual_environment(run_pl, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    p = subprocess.run([run_pl, "JOB=2:3", "l.JOB.log", "true"], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["l.2.log", "l.3.log"]
