# Sourced by the step scripts after parse_options.sh: makes the job runner in $cmd runnable, or stops.
# Kaldi's runners (run.pl, queue.pl, slurm.pl) are found on PATH where Kaldi's path.sh puts them; without
# Kaldi, run.pl falls back to our steps/run.pl. A runner that cannot be found stops the step here, before
# any job starts or a log is promised.
__runner=${cmd%% *}
if ! command -v "$__runner" >/dev/null 2>&1; then
  if [ "$(basename "$__runner")" = run.pl ]; then
    cmd="$(dirname "$0")/run.pl${cmd#"$__runner"}"
  else
    echo "$0: job runner '$__runner' (--cmd) not found; is Kaldi's utils/ on PATH (source path.sh)?" >&2
    exit 1
  fi
fi
unset __runner
