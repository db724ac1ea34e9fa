# Sourced by steps/lmrescore_nbest.sh and steps/lmrescore_lattice.sh after parse_options.sh: checks the
# arguments and the inputs, finds words.txt, sets $oldlm $lmdir $data $indir $dir $words $njobs $aq and the job
# runner $cmd (limited to --nj jobs at a time), and prepares <out-decode-dir>. Defines lmrescore_score, which
# scores the output as steps/score_kaldi.sh does.
#
# Arguments, ours or Kaldi's:
#   <old-lm> <lm-dir> <data-dir> <in-decode-dir> <out-decode-dir>
#       <old-lm>: an ARPA file, a G.fst, a G.carpa or a Kaldi lang dir (its G.carpa if present, else its G.fst);
#       a lang dir in first place is also the order of Kaldi's steps/lmrescore_const_arpa.sh.
#   <old-lang-dir> <nn-model-dir> <vocab> <data-dir> <in-decode-dir> <out-decode-dir>
#       as Kaldi's steps/pytorchnn/lmrescore_{nbest,lattice}_pytorchnn.sh; <vocab> must exist but is not read
#       (our LM dir carries its own vocabulary).

if [ $# -eq 6 ] && [ -d "$1" ]; then
  oldlm=$1; lmdir=$2; nnvocab=$3; data=$4; indir=$5; dir=$6
  [ -f "$nnvocab" ] || { echo "$0: no such file $nnvocab (the <vocab> argument of Kaldi's order)" >&2; exit 1; }
elif [ $# -eq 5 ]; then
  oldlm=$1; lmdir=$2; data=$3; indir=$4; dir=$5
else
  printf '%b\n' "$help_message" >&2
  exit 1
fi
if [ -n "$inv_acwt" ]; then  # Kaldi's --inv-acwt: the acoustic scale is its inverse
  acwt=$(awk -v x="$inv_acwt" 'BEGIN { if (x + 0 <= 0) exit 1; print 1.0 / x }') || {
    echo "$0: --inv-acwt must be a positive number, got '$inv_acwt'" >&2; exit 1; }
fi

. "$(dirname "$0")/job_runner.sh"
. "$(dirname "$0")/find_toolkit.sh" || exit 1

if [ -d "$lmdir" ] && [ ! -f "$lmdir/config.json" ] && { [ -f "$lmdir/G.carpa" ] || [ -f "$lmdir/G.fst" ]; }; then
  echo "$0: $lmdir is a Kaldi lang dir (as the <new-lang-dir> of lmrescore_const_arpa.sh); here the second" \
       "argument is the neural LM dir" >&2
  exit 1
fi
if [ -z "$words" ]; then
  if [ -d "$oldlm" ] && [ -f "$oldlm/words.txt" ]; then
    words=$oldlm/words.txt
  else
    for f in "$indir"/../graph*/words.txt; do [ -f "$f" ] && { words=$f; break; }; done
  fi
  [ -n "$words" ] || { echo "$0: no words.txt found in $indir/../graph*/; give --words" >&2; exit 1; }
fi
[ -e "$oldlm" ] || { echo "$0: no such file or lang dir $oldlm" >&2; exit 1; }
for f in "$lmdir/config.json" "$words" "$indir/num_jobs"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
# Once, before any job: the old LM is an ARPA file, a G.fst, a G.carpa or a lang dir with one of them, and
# reads whole (a corrupt file is found here, not in every job).
oldlm_info=$($aq old-lm --open "$oldlm" --words "$words" --use-phi "${use_phi:-false}" 2>&1) || {
  echo "$0: bad old LM: ${oldlm_info##*error: }" >&2
  exit 1
}
echo "$0: old LM: $oldlm_info"
njobs=$(cat "$indir/num_jobs")
for j in $(seq "$njobs"); do
  [ -f "$indir/lat.$j.gz" ] || { echo "$0: no such file $indir/lat.$j.gz" >&2; exit 1; }
done
[ -n "$nj" ] || nj=$njobs
case "$cmd" in *run.pl*|*queue.pl*|*slurm.pl*) cmd="$cmd --max-jobs-run $nj" ;; esac

mkdir -p "$dir/log" || exit 1
cp "$indir/num_jobs" "$dir/num_jobs"

lmrescore_score() {
  if [ "$skip_scoring" != true ]; then
    if [ -f "$data/text" ]; then
      # Kaldi's scoring options given to this step go through to the scoring; --scoring-opts come last.
      local sopts=()
      [ -n "$min_lmwt" ] && sopts+=(--min-lmwt "$min_lmwt")
      [ -n "$max_lmwt" ] && sopts+=(--max-lmwt "$max_lmwt")
      [ -n "$word_ins_penalty" ] && sopts+=(--word-ins-penalty "$word_ins_penalty")
      sopts+=(--decode-mbr "$decode_mbr")
      "$(dirname "$0")/score_kaldi.sh" --cmd "$cmd" "${sopts[@]}" $scoring_opts "$data" "$(dirname "$words")" \
        "$dir" || exit 1
    else
      echo "$0: $data/text does not exist; not scoring"
    fi
  fi
}
