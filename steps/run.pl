#!/usr/bin/env python3
"""Run a command, or an array of jobs, on this machine; the interface of Kaldi's utils/run.pl.

Usage: run.pl [options] [JOB=1:N] <log-file> <command> [args...]

  run.pl JOB=1:4 exp/lm/log/score.JOB.log asr-lm-quant ppl --part JOB/4 ...

Every occurrence of the job variable (JOB above; any name works) in the log file name and in the command
is replaced by the job number. The command runs under bash with stdout and stderr appended to its log.
Each log starts with '# <command>' and '# Started at <date>', and ends with
'# Accounting: time=<seconds> threads=1' and
'# Ended (code <exit status>) at <date>, elapsed time <seconds> seconds', as Kaldi's do.
Words of the command without white space are passed to bash as they are (so a quoted '|' or '>' is a
shell operator, as in Kaldi); words with white space are quoted.

Options:
  --max-jobs-run N   run at most N jobs at a time (default: number of CPUs); -tc N is the same
  --num-threads N, --mem X, --gpu N, --config F, --time T and other grid options are accepted and
  ignored (local runs), as is -V; queue.pl-style '-l X', '-pe X N' likewise.
Exit status: 0 if every job succeeded, else 1, with the failed jobs' logs named on stderr.
"""

import os
import re
import shlex
import subprocess
import sys
import time

PROG = "run.pl"


def die(msg, code=1):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    max_jobs = os.cpu_count() or 1
    if argv and argv[0] in ("--help", "-h"):
        print(__doc__.strip())
        sys.exit(0)
    i = 0
    while i < len(argv) and argv[i].startswith("-") and len(argv) - i >= 2:
        opt = argv[i]
        if opt == "-V":
            i += 1
            continue
        if opt in ("--max-jobs-run", "-tc"):
            if not re.fullmatch(r"[1-9]\d*", argv[i + 1]):
                die(f"{opt} must be a positive integer, got '{argv[i + 1]}'")
            max_jobs = int(argv[i + 1])
            i += 2
        elif opt == "-pe":  # -pe smp N
            i += 3
        elif opt.startswith("-"):
            i += 2  # a grid option with one value; nothing to do locally
    argv = argv[i:]
    first, last, var = 1, 1, None
    if argv:
        m = re.fullmatch(r"([A-Za-z_]\w*)=(\d+):(\d+)", argv[0])
        m1 = re.fullmatch(r"([A-Za-z_]\w*)=(\d+)", argv[0])
        if m:
            var, first, last = m.group(1), int(m.group(2)), int(m.group(3))
            if last < first:
                die(f"empty job range {argv[0]}")
            argv = argv[1:]
        elif m1:
            var, first, last = m1.group(1), int(m1.group(2)), int(m1.group(2))
            argv = argv[1:]
        elif re.fullmatch(r".+=.*:.*", argv[0]):
            die(f"bad job specifier '{argv[0]}' (expected e.g. JOB=1:10)")
    if len(argv) < 2:
        die("Usage: run.pl [options] [JOB=1:N] <log-file> <command> [args...]  (run.pl --help for more)")
    logfile, words = argv[0], argv[1:]
    if var is not None and last > first and var not in logfile:
        die(f"several jobs ({var}={first}:{last}) but the log file '{logfile}' does not contain {var}")
    return max_jobs, var, first, last, logfile, words


def join_command(words):
    # As Kaldi: words without spaces go as they are (so pipes and redirections typed as one quoted
    # argument, or as separate words, keep their meaning); others are quoted.
    out = []
    for w in words:
        if w and not re.search(r"\s", w):
            out.append(w)
        elif '"' in w:
            out.append("'" + w + "'")
        else:
            out.append('"' + w + '"')
    return " ".join(out)


def substitute(text, var, job):
    return text if var is None else re.sub(re.escape(var), str(job), text)


def now():
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def start(cmd, logfile):
    os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)
    log = open(logfile, "w")
    log.write(f"# {cmd}\n# Started at {now()}\n#\n")
    log.flush()
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return proc, log, time.time()


def finish(proc, log, t0):
    code = proc.returncode
    if code < 0:
        code = 128 - code  # killed by a signal, as the shell reports it
    elapsed = int(round(time.time() - t0))
    log.write(f"# Accounting: time={elapsed} threads=1\n")
    log.write(f"# Ended (code {code}) at {now()}, elapsed time {elapsed} seconds\n")
    log.close()
    return code


def main(argv):
    max_jobs, var, first, last, logfile, words = parse_args(argv)
    cmd = join_command(words)
    pending = list(range(first, last + 1))
    running = {}
    failed = []
    try:
        while pending or running:
            while pending and len(running) < max_jobs:
                job = pending.pop(0)
                log_j = substitute(logfile, var, job)
                try:
                    running[job] = (*start(substitute(cmd, var, job), log_j), log_j)
                except OSError as e:
                    die(f"cannot write log file {log_j}: {e}")
            pid, status = os.wait()
            for job, (proc, log, t0, log_j) in list(running.items()):
                if proc.pid == pid:
                    # (os.waitstatus_to_exitcode needs Python 3.9; a system python3 may be older)
                    proc.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                                       else os.WEXITSTATUS(status))
                    if finish(proc, log, t0) != 0:
                        failed.append((job, log_j))
                    del running[job]
                    break
    except KeyboardInterrupt:
        for proc, *_ in running.values():
            proc.terminate()
        die("interrupted", 130)
    if failed:
        n = last - first + 1
        failed.sort()
        if n == 1:
            print(f"{PROG}: job failed, log is in {failed[0][1]}", file=sys.stderr)
        else:
            pattern = substitute(logfile, var, "*") if var else logfile
            print(f"{PROG}: {len(failed)} / {n} failed, log is in {pattern}", file=sys.stderr)
            for job, log_j in failed:
                print(f"{PROG}: job {job} failed, see {log_j}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
