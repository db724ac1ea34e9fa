#!/usr/bin/env bash
# Kaldi-style scoring of a decode dir, as Kaldi's steps/scoring/score_kaldi_wer.sh: for each LM weight
# (--min-lmwt..--max-lmwt) and word insertion penalty, the best path of every lattice (acoustic costs
# scaled by 1/LMWT, the penalty added per word), WER against <data-dir>/text. Writes <decode-dir>/wer_LMWT_WIP,
# <decode-dir>/scoring_kaldi/{penalty_WIP/LMWT.txt,best_wer,wer_details/,sweep.json,sweep.md,wer_vs_lmwt.png},
# log in <decode-dir>/scoring_kaldi/log/score.log. Executable local/wer_{hyp,ref,output}_filter in the
# current directory are used as Kaldi uses them. --decode-mbr true takes the minimum Bayes risk hypothesis
# instead of the best path, as Kaldi's lattice-prune --beam=$beam | lattice-mbr-decode.

cmd=run.pl
stage=0
min_lmwt=7
max_lmwt=17
word_ins_penalty=0.0,0.5,1.0
stats=true
hyp_filter=none
hyp=
decode_mbr=false
beam=6
help_message="Usage: $0 [options] <data-dir> <lang-dir|graph-dir> <decode-dir>
e.g.: $0 data/eval2000 data/lang_sw1_tg exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg
Options:
  --cmd <cmd>                       how to run the job (default: run.pl)
  --min-lmwt <int>                  lowest LM weight (default: 7)
  --max-lmwt <int>                  highest LM weight (default: 17)
  --word-ins-penalty <list>         comma-separated penalties (default: 0.0,0.5,1.0)
  --stats <bool>                    write scoring_kaldi/wer_details (default: true)
  --hyp-filter <none|hub5>          built-in hypothesis filter (default: none, as Kaldi)
  --hyp <LMWT:WIP:FILE>             score a hypothesis text instead of lat.*.gz (e.g. n-best rescoring output)
  --decode-mbr <bool>               minimum Bayes risk decoding, as Kaldi's lattice-mbr-decode (default: false)
  --beam <float>                    with --decode-mbr true: lattice-prune beam before MBR (default: 6)
  --stage <int>                     accepted for compatibility (the scoring is one stage)"

. "$(dirname "$0")/parse_options.sh" || exit 1

if [ $# -ne 3 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
data=$1
lang_or_graph=$2
dir=$3
if [ "$decode_mbr" = true ] && [ -n "$hyp" ]; then
  echo "$0: --decode-mbr true needs the lattices of the decode dir; it cannot be used with --hyp" >&2
  exit 1
fi

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1

for f in "$lang_or_graph/words.txt" "$data/text"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
# A re-run scores the decode dir again, replacing the earlier wer_* files (as Kaldi's scoring does).
opts=(--min-lmwt "$min_lmwt" --max-lmwt "$max_lmwt" --word-ins-penalty "$word_ins_penalty"
      --hyp-filter "$hyp_filter" --recipe-filters --overwrite)
[ "$stats" = true ] || opts+=(--no-stats)
[ "$decode_mbr" = true ] && opts+=(--decode-mbr --mbr-beam "$beam")
if [ -n "$hyp" ]; then
  opts+=(--hyp "$hyp")
else
  [ -f "$dir/lat.1.gz" ] || { echo "$0: no such file $dir/lat.1.gz" >&2; exit 1; }
fi

mkdir -p "$dir/scoring_kaldi/log" || exit 1
$cmd "$dir/scoring_kaldi/log/score.log" \
  $aq score-kaldi "${opts[@]}" "$data" "$lang_or_graph" "$dir" || {
  echo "$0: scoring failed; see $dir/scoring_kaldi/log/score.log" >&2
  tail -n 5 "$dir/scoring_kaldi/log/score.log" | grep -v '^#' >&2
  exit 1
}
cat "$dir/scoring_kaldi/best_wer"
