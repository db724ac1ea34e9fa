# Sourced by the step scripts: sets $aq, the command that runs the toolkit, and $aq_python, its interpreter.
# Whichever comes first: asr-lm-quant on PATH (a recipe's path.sh puts the project's .venv/bin there), the
# project's own .venv beside steps/, or a python3 on PATH that has the toolkit and its dependencies installed.
# Otherwise the step stops here with one line saying what to source, not deep in a job log.
__steps=$(cd -P "$(dirname "$0")" && pwd)
if command -v asr-lm-quant >/dev/null 2>&1; then
  aq=asr-lm-quant
  aq_python=$(dirname "$(command -v asr-lm-quant)")/python
  [ -x "$aq_python" ] || aq_python=python3
elif [ -x "$__steps/../.venv/bin/python" ] && "$__steps/../.venv/bin/python" -c "import asr_lm_quant" 2>/dev/null; then
  aq_python=$(cd "$__steps/../.venv/bin" && pwd)/python
  aq="$aq_python -m asr_lm_quant.cli"
elif python3 -c "import asr_lm_quant, kaldialign, kenlm" >/dev/null 2>&1; then
  aq_python=python3
  aq="python3 -m asr_lm_quant.cli"
else
  echo "$0: the toolkit's Python environment is not found (no asr-lm-quant on PATH, no $(cd "$__steps/.." && pwd)/.venv): source a recipe's path.sh (recipes/mini/path.sh), or run 'make venv' first" >&2
  exit 1
fi
unset __steps
