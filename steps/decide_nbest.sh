#!/usr/bin/env bash
# Decide and score n-best lists from any recogniser (our TSV/JSONL format, e.g. rescore-nbest's output, or
# generic JSON, ESPnet decode dirs, Whisper/HF dumps, NeMo manifests: --nbest-format):
# the interpolation weight, LM scale and word insertion penalty with the fewest errors on the dev set pick
# the test set's 1-best. Writes <out-dir>/{dev,test}/text (Kaldi text), decision.json, sweep.md, sweep.png;
# log in <out-dir>/log/decide.log. Re-running replaces the results.

cmd=run.pl
weights=
lm_scales=
penalties=
per_token_costs=none
nbest_format=auto
normalize=none
subsets=
help_message="Usage: $0 [options] <dev-nbest> <dev-text> <test-nbest> <test-text> <out-dir>
  <dev-nbest>, <test-nbest>: n-best files or ESPnet decode dirs, with {weight} in the name when --weights is given;
  <dev-text>, <test-text>: references in Kaldi text form (utt-id word ...); <test-text> may be - (no WER).
e.g.: $0 --weights 0.5,0.8 exp/rescore/dev.{weight}.tsv data/dev/text exp/rescore/test.{weight}.tsv \\
        data/test/text exp/rescore/decided
Options:
  --cmd <cmd>                  how to run the job (default: run.pl)
  --weights <list>             interpolation weights in the file names
  --lm-scales <grid>           LM scales, a list or START:STOP:STEP (default: asr-lm-quant's)
  --penalties <grid>           word insertion penalties (default: asr-lm-quant's)
  --per-token-costs <which>    none|acoustic|lm|both: costs given as per-token averages (default: none)
  --nbest-format <format>      auto, or a format name of asr-lm-quant decide-nbest --help (default: auto)
  --normalize <how>            none|lower|asr: text normalisation of hypotheses and references (default: none)
  --subsets <NAME=PREFIX,...>  WER per utterance-id prefix too (e.g. swbd=sw_,callhm=en_)"

. "$(dirname "$0")/parse_options.sh" || exit 1

if [ $# -ne 5 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
dev=$1; dev_text=$2; test=$3; test_text=$4; dir=$5

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1
[ -f "$dev_text" ] || { echo "$0: no such file $dev_text" >&2; exit 1; }
[ "$test_text" = - ] || [ -f "$test_text" ] || { echo "$0: no such file $test_text" >&2; exit 1; }

opts=(--dev "$dev" --dev-ref "$dev_text" --test "$test" --per-token-costs "$per_token_costs"
      --nbest-format "$nbest_format" --normalize "$normalize" --out "$dir" --overwrite)
[ "$test_text" = - ] || opts+=(--test-ref "$test_text")
[ -n "$weights" ] && opts+=(--weights "$weights")
[ -n "$lm_scales" ] && opts+=(--lm-scales "$lm_scales")
[ -n "$penalties" ] && opts+=(--penalties "$penalties")
[ -n "$subsets" ] && opts+=(--subsets "$subsets")

mkdir -p "$dir/log" || exit 1
$cmd "$dir/log/decide.log" $aq decide-nbest "${opts[@]}" || {
  echo "$0: deciding failed; see $dir/log/decide.log" >&2
  tail -n 5 "$dir/log/decide.log" | grep -v '^#' >&2
  exit 1
}
grep -v '^#' "$dir/log/decide.log" | tail -n 1
