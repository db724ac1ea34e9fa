# Sourced by steps/lmrescore_nbest.sh and steps/lmrescore_lattice.sh after parse_options.sh: checks the
# five arguments and the inputs, finds words.txt, sets $oldlm $lmdir $data $indir $dir $words $njobs $aq and
# the job runner $cmd (limited to --nj jobs at a time), and prepares <out-decode-dir>. Defines
# lmrescore_score, which scores the output as steps/score_kaldi.sh does.

if [ $# -ne 5 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
oldlm=$1
lmdir=$2
data=$3
indir=$4
dir=$5

. "$(dirname "$0")/job_runner.sh"
aq=asr-lm-quant
command -v asr-lm-quant >/dev/null 2>&1 || aq="python3 -m asr_lm_quant.cli"

if [ -z "$words" ]; then
  for f in "$indir"/../graph*/words.txt; do [ -f "$f" ] && { words=$f; break; }; done
  [ -n "$words" ] || { echo "$0: no words.txt found in $indir/../graph*/; give --words" >&2; exit 1; }
fi
for f in "$oldlm" "$lmdir/config.json" "$words" "$indir/num_jobs"; do
  [ -f "$f" ] || { echo "$0: no such file $f" >&2; exit 1; }
done
# Once, before any job: the old LM must be the ARPA file (plain, gzip or kenlm binary), not G.fst or G.carpa.
if ! { gzip -cdf "$oldlm" 2>/dev/null || true; } | head -c 65536 | grep -aq -e '^\\data\\' -e '^mmap lm '; then
  echo "$0: $oldlm is not an ARPA LM (no \\data\\ header): give the ARPA file the first pass was built from," \
       "not G.fst or G.carpa" >&2
  exit 1
fi
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
      "$(dirname "$0")/score_kaldi.sh" --cmd "$cmd" $scoring_opts "$data" "$(dirname "$words")" "$dir" || exit 1
    else
      echo "$0: $data/text does not exist; not scoring"
    fi
  fi
}
