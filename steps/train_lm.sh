#!/usr/bin/env bash
# Train a Transformer LM on prepared LM text (train.txt valid.txt words.txt, e.g. from
# steps/prepare_lm_text.sh), single-process or data-parallel with torchrun. Logs go to <exp-dir>/log/.
# Re-running resumes from the newest checkpoint; a finished run is left as it is.

cmd=run.pl
nproc=1          # processes for data-parallel training (torchrun --nproc-per-node)
threads=0        # torch CPU threads per process (0: torch's default)
seed=
max_epochs=
bf16=false
init_model=
help_message="Usage: $0 [options] <config.json> <lm-text-dir> <exp-dir>
  <lm-text-dir> holds train.txt, valid.txt and words.txt; the model is written to <exp-dir>
  (config.json, model.safetensors, words.txt, results.json; checkpoints/ and log/ beside them).
e.g.: $0 --cmd \"\$cuda_cmd\" --nproc 2 conf/lm_swbd.json data/lm exp/lm
Options:
  --cmd <cmd>              how to run the job (default: run.pl)
  --nproc <n>              data-parallel processes via torchrun (default: 1; gloo on CPU, nccl on GPU)
  --threads <n>            torch CPU threads per process (default: torch's choice)
  --seed <n>               overrides the configuration's seed
  --max-epochs <n>         overrides the configuration's max_epochs
  --bf16 <bool>            bf16 autocast (default: false, or as the configuration says)
  --init-model <dir>       start from this model directory (same vocabulary and architecture)"

. "$(dirname "$0")/parse_options.sh" || exit 1

if [ $# -ne 3 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
config=$1
text=$2
dir=$3

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1
case "$nproc" in ''|*[!0-9]*|0) echo "$0: --nproc must be a positive integer, not '$nproc'" >&2; exit 1 ;; esac
for f in "$config" "$text/train.txt" "$text/valid.txt" "$text/words.txt"; do
  [ -f "$f" ] || { echo "$0: expected file $f to exist" >&2; exit 1; }
done

opts=(--config "$config" --train "$text/train.txt" --valid "$text/valid.txt" --vocab "$text/words.txt"
      --out "$dir" --threads "$threads")
[ -n "$seed" ] && opts+=(--seed "$seed")
[ -n "$max_epochs" ] && opts+=(--max-epochs "$max_epochs")
[ "$bf16" = true ] && opts+=(--bf16)
[ -n "$init_model" ] && opts+=(--init-model "$init_model")

if [ "$nproc" -gt 1 ]; then
  # torchrun comes with torch; the entry point is the same command
  launcher=("$aq_python" -m torch.distributed.run --standalone --nproc-per-node "$nproc" -m asr_lm_quant.cli)
else
  launcher=($aq)
fi

mkdir -p "$dir/log" || exit 1
echo "$0: training into $dir; follow it with: tail -f $dir/log/train.log"
$cmd "$dir/log/train.log" "${launcher[@]}" train "${opts[@]}" || {
  echo "$0: training failed; see $dir/log/train.log" >&2
  tail -n 5 "$dir/log/train.log" | grep -v '^#' >&2
  exit 1
}
[ -s "$dir/model.safetensors" ] || { echo "$0: training ended without $dir/model.safetensors" >&2; exit 1; }
echo "$0: model in $dir: $(grep -o '"valid_ppl": [0-9.]*' "$dir/results.json" | head -1)"
