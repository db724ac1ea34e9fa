#!/usr/bin/env bash
# Quantize a Transformer LM: steps/quantize.sh [options] <model-dir> <lm-data-dir> <out-dir>
# <lm-data-dir> holds train.txt valid.txt test.txt (as asr-lm-quant prepare-text writes them).
# Writes a packed model directory <out-dir> with quant_config.json, plan.json, results.json; log in <out-dir>/log/.
set -euo pipefail

cmd=run.pl
method=admm        # ptq, ste, admm, hessian, kl, search
bits=4             # uniform precision (ptq, ste, admm)
budget_bits=       # mixed precision: average bits per weight (hessian, kl, search)
compression=       # ... or compression ratio of the whole model
bands=             # mixed precision: the embedding in this many word-frequency bands
steps=200          # fine-tuning steps
seed=0
extra_opts=        # any other `asr-lm-quant quantize` options, quoted
help_message="Usage: $0 [options] <model-dir> <lm-data-dir> <out-dir>
 e.g.: $0 --method hessian --budget-bits 2 exp/lm data/lm exp/lm_hessian2
Options:
  --cmd <run.pl|queue.pl>   how to run the job ($cmd)
  --method <m>              ptq|ste|admm|hessian|kl|search ($method)
  --bits <b>                uniform bits ($bits)
  --budget-bits <x>         average bits budget for mixed precision
  --compression <r>         compression ratio budget for mixed precision
  --bands <k>               split the embedding into k word-frequency bands (mixed precision)
  --steps <n>               fine-tuning steps ($steps)
  --seed <n>                random seed ($seed)
  --extra-opts '<opts>'     more options for asr-lm-quant quantize"

. "$(dirname "$0")/parse_options.sh"
if [ $# -ne 3 ]; then echo "$help_message" >&2; exit 1; fi
. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1
model=$1; data=$2; out=$3
for f in $model/config.json $data/train.txt $data/valid.txt $data/test.txt; do
  [ -f $f ] || { echo "$0: no such file $f" >&2; exit 1; }
done
opts="--method $method --steps $steps --seed $seed"
[ -n "$bands" ] && opts="$opts --bands $bands"
case $method in
  ptq|ste|admm) opts="$opts --bits $bits" ;;
  *) if [ -n "$budget_bits" ]; then opts="$opts --budget-bits $budget_bits";
     elif [ -n "$compression" ]; then opts="$opts --compression $compression";
     else echo "$0: --method $method needs --budget-bits or --compression" >&2; exit 1; fi ;;
esac
mkdir -p "$out/log" || exit 1
echo "$0: quantizing into $out; follow it with: tail -f $out/log/quantize.log"
$cmd "$out/log/quantize.log" \
  $aq quantize $model $out $opts $extra_opts \
    --train $data/train.txt --valid $data/valid.txt --test $data/test.txt || {
  echo "$0: quantization failed; see $out/log/quantize.log" >&2
  tail -n 5 "$out/log/quantize.log" | grep -v '^#' >&2
  exit 1
}
echo "$0: done; see $out/results.json and 'asr-lm-quant quant-inspect $out'"
