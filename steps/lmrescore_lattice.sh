#!/usr/bin/env bash
# Lattice rescoring of a Kaldi decode dir with a (plain or quantized) Transformer LM by the path-cover
# estimate of Kaldi's steps/pytorchnn/lmrescore_lattice_pytorchnn.sh: prune (--beam at --acwt), give arcs
# with a posterior over --epsilon a unique history, score a set of paths covering every arc, give each arc
# the estimate of the best covering path through it, then graph += weight * nn - weight * ngram (old LM:
# ARPA, G.fst, G.carpa or lang dir). Writes <out-decode-dir>/lat.JOB.gz (same keys as the input) and
# num_jobs; logs in <out-decode-dir>/log/. One job per lat.JOB.gz through $cmd (run.pl, queue.pl, slurm.pl).
# --method pruned composes the lattices with the NN LM instead (Kaldi's RNNLM pruned rescoring).

cmd=run.pl
nj=
weight=0.8
acwt=0.1
beam=5.0
epsilon=0.5
method=path-cover
ngram_order=4
words=
device=cpu
bf16=false
token_budget=4096
check=true
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
        exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg_lat
Options:
  --cmd <cmd>               how to run jobs: run.pl, queue.pl, slurm.pl [opts] (default: run.pl)
  --nj <n>                  most jobs at a time (default: the input's num_jobs; one job per lat.JOB.gz)
  --weight <w>              NN LM weight, 0..1 (default: 0.8)
  --acwt <s>                acoustic scale for pruning and paths (default: 0.1, for chain and nnet3
                            models; GMM decodes use their own, e.g. 0.0833 = 1/12 as in Kaldi's GMM recipes)
  --beam <b>                pruning beam (default: 5.0)
  --epsilon <p>             posterior above which an arc gets a unique history (default: 0.5)
  --method <m>              path-cover, or pruned: compose with the NN LM under an n-gram history within
                            --beam, as Kaldi's RNNLM pruned rescoring (default: path-cover)
  --ngram-order <n>         --method pruned: histories sharing their last n-1 words are merged (default: 4)
  --words <words.txt>       symbol table of the lattices (default: the old-LM lang dir's words.txt, else
                            <in-decode-dir>/../graph*/words.txt)
  --use-phi <true|false>    a G.fst old LM: true removes the ARPA back-off walk's cost (Kaldi's --use-phi true)
                            instead of the cheapest path through G with #0 arcs as epsilons, the cost lattices
                            from decoding hold (default: false, as Kaldi's pytorchnn scripts); ARPA and
                            G.carpa always use the ARPA walk
  --device <dev>            torch device for the NN LM (default: cpu)
  --bf16 <true|false>       bfloat16 autocast for the NN LM (default: false)
  --token-budget <n>        model positions per NN batch (default: 4096)
  --check <bool>            self-check that weight 0 keeps the first pass's best path at LMWT 7..17
                            (path-cover only; default: true; cheap beside the NN LM)
  --inv-acwt <x>            Kaldi's form of the acoustic scale: --acwt 1/x (default: unset)
  --skip-scoring <bool>     do not run steps/score_kaldi.sh afterwards (default: false)
  --min-lmwt, --max-lmwt <int>, --word-ins-penalty <list>
                            passed to steps/score_kaldi.sh (default: its own, 7, 17, 0.0,0.5,1.0)
  --decode-mbr <bool>       score with minimum Bayes risk decoding (passed to steps/score_kaldi.sh; default: false)
  --scoring-opts <opts>     more options for steps/score_kaldi.sh"

. "$(dirname "$0")/parse_options.sh" || exit 1

. "$(dirname "$0")/lmrescore_common.sh" || exit 1

# A re-run replaces this step's own outputs in <out-decode-dir> (Kaldi's steps re-run the same way).
opts=(--overwrite --old-lm "$oldlm" --lm-dir "$lmdir" --words "$words" --acwt "$acwt" --weight "$weight"
      --use-phi "$use_phi"
      --beam "$beam" --epsilon "$epsilon" --device "$device" --token-budget "$token_budget")
[ "$bf16" = true ] && opts+=(--bf16)
opts+=(--method "$method")
if [ "$method" = pruned ]; then
  opts+=(--ngram-order "$ngram_order")  # --check is the path cover's self-check
else
  [ "$check" = true ] && opts+=(--check)
fi

echo "$0: rescoring $njobs lattice archives of $indir (method=$method, weight=$weight, beam=$beam, epsilon=$epsilon)"
echo "$0: follow it with: tail -f $dir/log/rescore.1.log"
$cmd JOB=1:"$njobs" "$dir/log/rescore.JOB.log" \
  $aq rescore-lattice "${opts[@]}" --lattices "ark:gunzip -c $indir/lat.JOB.gz|" \
    --out-lattices "ark:|gzip -c >$dir/lat.JOB.gz" --json "$dir/log/rescore.JOB.json" || {
  echo "$0: rescoring failed; see $dir/log/rescore.*.log" >&2
  exit 1
}
if [ "$check" = true ]; then
  # The self-check's count of (utterance, LMWT) pairs whose first-pass best path pruning removed, all jobs.
  pruned=$(cat "$dir"/log/rescore.*.json | awk -F'[:,]' '/"best_path_pruned_away"/ { n += $2 } END { print n + 0 }')
  compared=$(cat "$dir"/log/rescore.*.json | awk -F'[:,]' '/"compared"/ { n += $2 } END { print n + 0 }')
  [ "$pruned" -gt 0 ] && echo "$0: --check: at $pruned of $compared (utterance, LMWT) pairs pruning (--beam $beam)" \
    "removed the first pass's best path; a wider --beam keeps it" >&2
fi

lmrescore_score
exit 0
