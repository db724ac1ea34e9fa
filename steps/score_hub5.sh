#!/usr/bin/env bash
# Hub5 scoring (eval2000, rt03) as Switchboard's local/score_sclite.sh: for each LM weight and penalty a CTM
# from the best paths (graph costs scaled by LMWT, word times from the lattice alignments and the frame
# shift, converted with segments and reco2file_and_channel), filtered of noise, <unk>, hesitations and
# partial words, scored by SCTK hubscr.pl with <data-dir>/stm and <data-dir>/glm, for the whole set and
# for its subsets (eval2000: swbd, callhm; rt03: swbd, fsh). Writes <decode-dir>/score_LMWT_WIP/ and
# <decode-dir>/scoring/{best_wer,hub5_summary.json,hub5_summary.md,hub5_wer_vs_lmwt.png}; logs in
# <decode-dir>/scoring/log/.

cmd=run.pl
stage=0
min_lmwt=5
max_lmwt=17
word_ins_penalty=0.0,0.5,1.0
frame_shift=0.03
nj=2
glm=
stm=
hyp=
help_message="Usage: $0 [options] <data-dir> <lang-dir|graph-dir> <decode-dir>
e.g.: $0 data/eval2000 data/lang_sw1_tg exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg
Options:
  --cmd <cmd>                       how to run the job (default: run.pl)
  --min-lmwt <int>                  lowest LM weight (default: 5)
  --max-lmwt <int>                  highest LM weight (default: 17)
  --word-ins-penalty <list>         comma-separated penalties (default: 0.0,0.5,1.0)
  --frame-shift <secs>              frame shift of the lattice alignments (default: 0.03, chain models)
  --nj <int>                        hubscr runs at once (default: 2)
  --glm <file>                      GLM (default: <data-dir>/glm)
  --stm <file>                      STM (default: <data-dir>/stm)
  --hyp <LMWT:WIP:FILE>             score a hypothesis text (no alignment: words spread over the segment)
  --stage <int>                     accepted for compatibility (the scoring is one stage)"

. "$(dirname "$0")/parse_options.sh" || exit 1

if [ $# -ne 3 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
data=$1
lang=$2
dir=$3

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1

[ -n "$glm" ] || glm=$data/glm
[ -n "$stm" ] || stm=$data/stm
for f in "$stm" "$glm" "$lang/words.txt" "$data/segments" "$data/reco2file_and_channel"; do
  [ -f "$f" ] || { echo "$0: expecting file $f to exist" >&2; exit 1; }
done
opts=(--min-lmwt "$min_lmwt" --max-lmwt "$max_lmwt" --word-ins-penalty "$word_ins_penalty"
      --frame-shift "$frame_shift" --nj "$nj" --glm "$glm" --stm "$stm")
if [ -n "$hyp" ]; then
  opts+=(--hyp "$hyp")
else
  [ -f "$dir/lat.1.gz" ] || { echo "$0: expecting file $dir/lat.1.gz to exist" >&2; exit 1; }
fi

mkdir -p "$dir/scoring/log" || exit 1
$cmd "$dir/scoring/log/score_hub5.log" \
  $aq score-hub5 "${opts[@]}" "$data" "$lang" "$dir" || {
  echo "$0: scoring failed; see $dir/scoring/log/score_hub5.log" >&2
  tail -n 5 "$dir/scoring/log/score_hub5.log" | grep -v '^#' >&2
  exit 1
}
cat "$dir/scoring/best_wer"
