#!/usr/bin/env bash
# Prepare LM text (train.txt valid.txt test.txt words.txt stats.json) in <out-dir>, with a log in
# <out-dir>/log/prepare_text.log. A directory that already holds stats.json is left as it is (so a
# recipe can be re-run from an earlier stage) unless --overwrite true.

cmd=run.pl
overwrite=false
help_message="Usage: $0 [options] <out-dir> <source> [<source arguments>...]
  <source> is kaldi-swbd, ldc-swbd, lhotse-swbd or plain; the arguments go to 'asr-lm-quant prepare-text <source>'.
e.g.: $0 data/lm kaldi-swbd /path/to/kaldi/egs/swbd/s5c
      $0 data/lm ldc-swbd /data/swb_ms98_transcriptions --fisher /data/fe_03_p1_tran --eval2000 /data/LDC2002T43
      $0 data/lm lhotse-swbd data/manifests/swbd/swbd_supervisions_all.jsonl.gz \\
         --dictionary /data/swb_ms98_transcriptions/sw-ms98-dict.text --eval2000 /data/LDC2002T43 \\
         --fisher data/manifests/fisher/fisher-english_supervisions_all.jsonl.gz
      $0 data/lm plain --train train.txt.xz --valid valid.txt.xz --test test.txt.xz --normalize asr
Options:
  --cmd <cmd>            how to run the job (default: run.pl)
  --overwrite <bool>     redo it even if <out-dir> already holds results (default: false)"

. "$(dirname "$0")/parse_options.sh" || exit 1

if [ $# -lt 2 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
out=$1
source_kind=$2
shift 2

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1
case "$source_kind" in
  kaldi-swbd|ldc-swbd|lhotse-swbd|plain) ;;
  *) echo "$0: unknown source '$source_kind' (expected kaldi-swbd, ldc-swbd, lhotse-swbd or plain)" >&2; exit 1 ;;
esac

if [ -f "$out/stats.json" ] && [ "$overwrite" != true ]; then
  echo "$0: $out already holds prepared text ($out/stats.json); skipping (--overwrite true to redo it)"
  exit 0
fi

extra=()
[ "$overwrite" = true ] && extra+=(--overwrite)

mkdir -p "$out/log" || exit 1
echo "$0: preparing $out; follow it with: tail -f $out/log/prepare_text.log"
$cmd "$out/log/prepare_text.log" \
  $aq prepare-text "$source_kind" "$@" --out "$out" "${extra[@]}" || {
  echo "$0: text preparation failed; see $out/log/prepare_text.log" >&2
  tail -n 5 "$out/log/prepare_text.log" | grep -v '^#' >&2
  exit 1
}

for f in train.txt valid.txt test.txt words.txt stats.json; do
  [ -s "$out/$f" ] || { echo "$0: expected $out/$f to exist and be non-empty" >&2; exit 1; }
done
echo "$0: LM text in $out: $(wc -l < "$out/train.txt") train, $(wc -l < "$out/valid.txt") valid," \
  "$(wc -l < "$out/test.txt") test sentences, $(wc -l < "$out/words.txt") words (details in $out/stats.json)"
