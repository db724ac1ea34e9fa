# Environment for the recipe; run.sh sources it from the recipe directory.
# Puts the toolkit (asr-lm-quant, from the project's .venv unless it is already on PATH) and its steps/
# (run.pl, parse_options.sh) on PATH. Set ASR_LM_QUANT_ROOT to use a toolkit checkout elsewhere.
if [ -z "${ASR_LM_QUANT_ROOT:-}" ]; then
  ASR_LM_QUANT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
fi
export ASR_LM_QUANT_ROOT
if [ -x "$ASR_LM_QUANT_ROOT/.venv/bin/asr-lm-quant" ]; then
  export PATH="$ASR_LM_QUANT_ROOT/.venv/bin:$PATH"
elif ! command -v asr-lm-quant >/dev/null 2>&1; then
  echo "path.sh: asr-lm-quant not found: run 'make venv' in $ASR_LM_QUANT_ROOT first" >&2
  return 1
fi
export PATH="$ASR_LM_QUANT_ROOT/steps:$PATH"
export PYTHONUNBUFFERED=1  # progress and log lines reach the job logs as they happen
export LC_ALL=C            # Kaldi's sort order for ids and tables
# With Kaldi installed, KALDI_ROOT lets cmd.sh use its queue.pl / slurm.pl:
# export KALDI_ROOT=/path/to/kaldi
