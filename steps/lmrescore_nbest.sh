#!/usr/bin/env bash
# N-best rescoring of a Kaldi decode dir with a (plain or quantized) Transformer LM, as Kaldi's
# steps/pytorchnn/lmrescore_nbest_pytorchnn.sh: each lat.JOB.gz becomes N-best lists (lattice-to-nbest at
# --acwt), the old n-gram LM cost (ARPA, G.fst or G.carpa) is taken out of each graph cost and the interpolation
#   new_graph = graph - ngram + weight * nn + (1 - weight) * ngram
# put in. Writes <out-decode-dir>/lat.JOB.gz (per utterance the union of its rescored linear paths, keyed by
# the utterance id, as nbest-to-lattice writes), archives.JOB/ (Kaldi n-best tables words, acwt, lmwt.withlm,
# lmwt.nolm, lmwt.lmonly, lmwt.nn, lmwt.interp.W), nbest.JOB.tsv, num_jobs; logs in <out-decode-dir>/log/.
# One job per lat.JOB.gz through $cmd (run.pl here; queue.pl or slurm.pl from $KALDI_ROOT work the same).

cmd=run.pl
nj=
N=20
weight=0.8
acwt=0.1
words=
device=cpu
bf16=false
token_budget=4096
skip_scoring=false
scoring_opts=
min_lmwt=
max_lmwt=
word_ins_penalty=
decode_mbr=false
inv_acwt=
use_phi=false
help_message="Usage: $0 [options] <old-lm> <lm-dir> <data-dir> <in-decode-dir> <out-decode-dir>
   or: $0 [options] <old-lang-dir> <lm-dir> <vocab> <data-dir> <in-decode-dir> <out-decode-dir>  (Kaldi's order)
<old-lm>: the first pass's LM: an ARPA file (plain, gzip, kenlm binary), a G.fst, a G.carpa, or a Kaldi lang
dir (its G.carpa if present, else its G.fst; words.txt from it). <vocab> (Kaldi's order) is not read.
e.g.: $0 data/local/lm/sw1_fsh.o4g.kn.gz exp/lm/transformer data/eval2000 \\
        exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg_nbest
Options:
  --cmd <cmd>               how to run jobs: run.pl, queue.pl, slurm.pl [opts] (default: run.pl)
  --nj <n>                  most jobs at a time (default: the input's num_jobs; one job per lat.JOB.gz)
  --N <n>                   N-best size (default: 20)
  --weight <w>              NN LM weight in the interpolation, 0..1 (default: 0.8)
  --acwt <s>                acoustic scale for the N-best (default: 0.1, for chain and nnet3 models; GMM
                            decodes use their own, e.g. 0.0833 = 1/12 as in Kaldi's GMM recipes)
  --words <words.txt>       symbol table of the lattices (default: the old-LM lang dir's words.txt, else
                            <in-decode-dir>/../graph*/words.txt)
  --use-phi <true|false>    a G.fst old LM: true removes the ARPA back-off walk's cost (Kaldi's --use-phi true)
                            instead of the cheapest path through G with #0 arcs as epsilons, the cost lattices
                            from decoding hold (default: false, as Kaldi's pytorchnn scripts); ARPA and
                            G.carpa always use the ARPA walk
  --device <dev>            torch device for the NN LM: cpu, cuda, cuda:1 (default: cpu)
  --bf16 <true|false>       bfloat16 autocast for the NN LM (default: false)
  --token-budget <n>        model positions per NN batch (default: 4096)
  --inv-acwt <x>            Kaldi's form of the acoustic scale: --acwt 1/x (default: unset)
  --skip-scoring <bool>     do not run steps/score_kaldi.sh afterwards (default: false)
  --min-lmwt, --max-lmwt <int>, --word-ins-penalty <list>
                            passed to steps/score_kaldi.sh (default: its own, 7, 17, 0.0,0.5,1.0)
  --decode-mbr <bool>       score with minimum Bayes risk decoding (passed to steps/score_kaldi.sh; default: false)
  --scoring-opts <opts>     more options for steps/score_kaldi.sh"

. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/lmrescore_common.sh" || exit 1

# A re-run replaces this step's own outputs in <out-decode-dir> (Kaldi's steps re-run the same way).
opts=(--overwrite --old-lm "$oldlm" --lm-dir "$lmdir" --words "$words" --n "$N" --acwt "$acwt" --weight "$weight"
      --use-phi "$use_phi"
      --device "$device" --token-budget "$token_budget")
[ "$bf16" = true ] && opts+=(--bf16)

echo "$0: rescoring $njobs lattice archives of $indir (N=$N, weight=$weight)"
echo "$0: follow it with: tail -f $dir/log/rescore.1.log"
$cmd JOB=1:"$njobs" "$dir/log/rescore.JOB.log" \
  $aq rescore-nbest "${opts[@]}" --lattices "ark:gunzip -c $indir/lat.JOB.gz|" \
    --out-lattices "ark:|gzip -c >$dir/lat.JOB.gz" --out-tables "$dir/archives.JOB" \
    --out-nbest "$dir/nbest.JOB.tsv" --json "$dir/log/rescore.JOB.json" || {
  echo "$0: rescoring failed; see $dir/log/rescore.*.log" >&2
  exit 1
}

lmrescore_score
exit 0
