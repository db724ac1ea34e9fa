#!/usr/bin/env bash
# Transformer LMs for Switchboard (Hub5'00 / eval2000), next to a Kaldi egs/swbd/s5c setup.
#
#   ./run.sh --kaldi-swbd-dir /path/to/kaldi/egs/swbd/s5c            # all stages
#   ./run.sh --kaldi-swbd-dir ... --stage 1 --stop-stage 1            # LM training only
#   ./run.sh --swbd-trans /data/swb_ms98_transcriptions \
#            --fisher-trans "/data/fe_03_p1_tran /data/fe_03_p2_tran" --eval2000 /data/LDC2002T43   # no Kaldi
#
# Stages:
#   0  LM text: data/lm/{train,valid,test}.txt and words.txt, as Kaldi's local/pytorchnn/data_prep.sh
#      makes them (Switchboard train_nodev x3 + Fisher, valid = train_dev, test = eval2000).
#   1  Transformer LM training (exp/lm) -- or import of a Transformer that Kaldi's pytorchnn recipe trained
#      (--kaldi-nnlm) -- then its perplexity on valid and test (exp/lm/ppl_{valid,test}.json).
#   2  Quantization of exp/lm into the systems of conf/quant_systems.json (uniform 8/4-bit ADMM, Hessian-trace
#      and searched mixed precision at 2 bits per weight, 16x): exp/lm_<system>/ (packed model, results.json).
#   3  N-best (N=20, weight 0.8) and lattice rescoring of the s5c decode dirs (--decode-dirs, default
#      exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg) with every LM: exp/rescore/<lm>_<nbest|lattice>_<decode>/.
#   4  Hub5 scoring (sclite/hubscr with the set's stm and glm; total, swbd, callhm) and Kaldi-style scoring of
#      the first pass (exp/rescore/firstpass_<decode>/, links to your lattices) and of every rescored dir.
#   5  Results table: exp/results.md, exp/results.json, exp/results_wer_vs_size.png.
# See README.md for how to point this at an existing s5c setup.

set -euo pipefail

stage=0
stop_stage=100
cmd=cmd.sh               # one job runner for every stage (run.pl, queue.pl, slurm.pl ...); cmd.sh: its runners
nj=4                     # parallel jobs for the rescoring stages
kaldi_swbd_dir=          # your Kaldi egs/swbd/s5c (has data/train_nodev, data/eval2000, data/lang, ...)
use_fisher=true          # add the Fisher transcripts to the training text (Kaldi: yes)
swbd_trans=              # without Kaldi: the LDC swb_ms98_transcriptions directory
fisher_trans=            # without Kaldi: Fisher transcript directories (space separated)
eval2000=                # without Kaldi: the LDC2002T43 directory or its .stm file
dev_utterances=4000      # without Kaldi: first Switchboard utterances held out for validation (s5c's train_dev)
text_dir=data/lm
lm_conf=conf/lm_swbd.json
lm_dir=exp/lm
bf16=false               # bf16 autocast in training (fast on recent CPUs and GPUs)
kaldi_nnlm=              # a model trained by Kaldi's local/pytorchnn/run_nnlm.sh (its model.pt):
                         # stage 1 then imports it instead of training one
kaldi_nnlm_words=        # that model's words.txt (default: <kaldi-swbd-dir>/data/pytorchnn/words.txt)
kaldi_nnlm_heads=8       # its attention heads (run_nnlm.sh: nhead=8)
kaldi_nnlm_type=Transformer  # its --model in Kaldi's train.py: Transformer or LSTM
quant_conf=conf/quant_systems.json   # quantization systems of stage 2 (each into <lm-dir>_<system>)
quant_systems=           # comma-separated subset of them (default: all)
quant_threads=           # torch CPU threads per quantization job (default: torch's choice)
quant_nj=1               # quantization systems built at once (each its own job: a GPU or CPU slot of --cmd)
decode_dirs=exp/chain/tdnn7q_sp/decode_eval2000_sw1_fsh_fg   # first-pass decode dirs (relative to --kaldi-swbd-dir)
old_lm=                  # LM in those lattices: ARPA (.gz is fine), G.fst, G.carpa or Kaldi lang dir
                         # (default: <kaldi-swbd-dir>/data/local/lm/sw1_fsh.o4g.kn.gz)
lang=                    # lang dir whose words.txt the lattices use (default: <kaldi-swbd-dir>/data/lang)
eval_data=               # data dir of the decode dirs (default: <kaldi-swbd-dir>/data/<set> of decode_<set>_*)
rescore_dir=exp/rescore
rescore_methods="nbest lattice"
rescore_lms=             # LM names to rescore with (default: the full-precision LM and every quantized system)
nbest=20                 # N-best size (Kaldi's pytorchnn recipe: 20)
weight=0.8               # NN LM interpolation weight (Kaldi's pytorchnn recipe: 0.8)
acwt=0.1                 # acoustic scale of the lattices (chain models: 0.1)
lattice_beam=5.0         # lattice rescoring: pruning beam
lattice_epsilon=0.5      # lattice rescoring: posterior above which an arc gets a unique history
device=cpu               # torch device of the NN LM in rescoring (cuda: jobs go through \$cuda_cmd)
token_budget=4096        # NN LM positions per batch in rescoring
hub5_scoring_opts=       # more options for steps/score_hub5.sh (e.g. "--min-lmwt 7 --max-lmwt 12")
kaldi_scoring=true       # also score Kaldi style (steps/score_kaldi.sh: wer_LMWT_WIP, best_wer)
kaldi_scoring_opts=      # more options for steps/score_kaldi.sh

help_message="Usage: $0 [options]
Options:
  --stage <n>              first stage to run (default: $stage)
  --stop-stage <n>         last stage to run (default: $stop_stage)
  --cmd <runner>           job runner for every stage, e.g. queue.pl (default: those of cmd.sh)
  --nj <n>                 parallel jobs (default: $nj)
  --kaldi-swbd-dir <dir>   Kaldi egs/swbd/s5c directory to take the text from
  --use-fisher <bool>      include the Fisher text (default: $use_fisher)
  --swbd-trans <dir>       without Kaldi: LDC swb_ms98_transcriptions directory
  --fisher-trans <dirs>    without Kaldi: Fisher transcript directories, space separated
  --eval2000 <dir|stm>     without Kaldi: LDC2002T43 directory or its .stm
  --dev-utterances <n>     without Kaldi: utterances held out for validation (default: $dev_utterances)
  --text-dir <dir>         LM text output (default: $text_dir)
  --lm-conf <json>         LM and training configuration (default: $lm_conf)
  --lm-dir <dir>           LM output directory (default: $lm_dir)
  --bf16 <bool>            bf16 autocast in training (default: $bf16)
  --kaldi-nnlm <model.pt>  import this Kaldi pytorchnn model in stage 1 instead of training
  --kaldi-nnlm-words <f>   its words.txt (default: <kaldi-swbd-dir>/data/pytorchnn/words.txt)
  --kaldi-nnlm-heads <n>   its attention heads (default: $kaldi_nnlm_heads)
  --kaldi-nnlm-type <t>    Transformer or LSTM, as it was trained (default: $kaldi_nnlm_type)
  --quant-conf <json>      quantization systems of stage 2 (default: $quant_conf)
  --quant-systems <a,b>    only these systems of it (default: all)
  --quant-threads <n>      torch CPU threads per quantization job
  --quant-nj <n>           quantization systems built at once (default: $quant_nj)
  --decode-dirs <dirs>     first-pass decode dirs, space separated, relative to --kaldi-swbd-dir
                           (default: $decode_dirs)
  --old-lm <lm>            the LM in those lattices: ARPA, G.fst, G.carpa or lang dir (default:
                           <kaldi-swbd-dir>/data/local/lm/sw1_fsh.o4g.kn.gz, else data/lang_sw1_fsh_fg)
  --lang <dir>             lang dir of the lattices' words.txt (default: <kaldi-swbd-dir>/data/lang)
  --eval-data <dir>        data dir with text, segments, stm, glm (default: <kaldi-swbd-dir>/data/<set>)
  --rescore-dir <dir>      rescoring output (default: $rescore_dir)
  --rescore-methods <m>    nbest and/or lattice (default: \"$rescore_methods\")
  --rescore-lms <names>    LMs to rescore with, e.g. \"lm lm_admm4\" (default: all)
  --nbest <n>              N-best size (default: $nbest)
  --weight <w>             NN LM interpolation weight (default: $weight)
  --acwt <s>               acoustic scale (default: $acwt, chain models)
  --lattice-beam <b>       lattice rescoring pruning beam (default: $lattice_beam)
  --lattice-epsilon <p>    lattice rescoring expansion threshold (default: $lattice_epsilon)
  --device <dev>           NN LM device for rescoring: cpu, cuda (default: $device)
  --token-budget <n>       NN LM positions per batch (default: $token_budget)
  --hub5-scoring-opts <o>  more options for steps/score_hub5.sh
  --kaldi-scoring <bool>   also score Kaldi style (default: $kaldi_scoring)
  --kaldi-scoring-opts <o> more options for steps/score_kaldi.sh"

cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. steps/parse_options.sh || exit 1
if [ "$cmd" != cmd.sh ]; then train_cmd=$cmd; decode_cmd=$cmd; cuda_cmd=$cmd; fi

if [ $# -ne 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  printf '%b\n' "$help_message" >&2
  exit 1
fi
for opt in nj quant_nj; do  # checked before any stage runs
  if ! [[ "${!opt}" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: --${opt//_/-} must be a positive integer, not '${!opt}'" >&2; exit 1
  fi
done

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"
}
# The long steps write to logs, not to the terminal: say which one to follow (a path that works from anywhere).
watch() { case $1 in /*) log "  follow it with: tail -f $1" ;; *) log "  follow it with: tail -f $PWD/$1" ;; esac; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: LM text into $text_dir"
  if [ -n "$kaldi_swbd_dir" ]; then
    local/check_s5c.sh --use-fisher "$use_fisher" "$kaldi_swbd_dir"
    fisher_opt=()
    [ "$use_fisher" = true ] || fisher_opt=(--fisher-text none)
    steps/prepare_lm_text.sh --cmd "$train_cmd" "$text_dir" kaldi-swbd "$kaldi_swbd_dir" ${fisher_opt[@]+"${fisher_opt[@]}"}
  elif [ -n "$swbd_trans" ]; then
    [ -n "$eval2000" ] || { echo "$0: --swbd-trans needs --eval2000 (the test set)" >&2; exit 1; }
    ldc_opts=(--eval2000 "$eval2000" --dev-utterances "$dev_utterances")
    if [ "$use_fisher" = true ]; then
      [ -n "$fisher_trans" ] || { echo "$0: give --fisher-trans, or --use-fisher false" >&2; exit 1; }
      for d in $fisher_trans; do ldc_opts+=(--fisher "$d"); done
    fi
    steps/prepare_lm_text.sh --cmd "$train_cmd" "$text_dir" ldc-swbd "$swbd_trans" "${ldc_opts[@]}"
  else
    echo "$0: stage 0 needs --kaldi-swbd-dir (a Kaldi s5c setup) or --swbd-trans/--eval2000 (LDC data)" >&2
    exit 1
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  for f in valid.txt test.txt; do
    [ -f "$text_dir/$f" ] || { echo "$0: $text_dir/$f missing: run stage 0 first" >&2; exit 1; }
  done
  if [ -n "$kaldi_nnlm" ]; then
    log "Stage 1: import Kaldi's $kaldi_nnlm_type LM $kaldi_nnlm into $lm_dir"
    if [ -z "$kaldi_nnlm_words" ]; then
      [ -n "$kaldi_swbd_dir" ] || { echo "$0: --kaldi-nnlm needs --kaldi-nnlm-words or --kaldi-swbd-dir" >&2; exit 1; }
      kaldi_nnlm_words=$kaldi_swbd_dir/data/pytorchnn/words.txt
    fi
    if [ -f "$lm_dir/model.safetensors" ]; then
      echo "$0: $lm_dir already holds a model; not importing again"
    else
      $train_cmd "$lm_dir/log/import.log" \
        asr-lm-quant import-kaldi --model "$kaldi_nnlm_type" --model-pt "$kaldi_nnlm" \
          --words "$kaldi_nnlm_words" --nhead "$kaldi_nnlm_heads" --out "$lm_dir"
    fi
  else
    log "Stage 1: train the Transformer LM ($lm_conf) into $lm_dir"
    [ -f "$text_dir/train.txt" ] || { echo "$0: $text_dir/train.txt missing: run stage 0 first" >&2; exit 1; }
    train_opts=()
    [ "$bf16" = true ] && train_opts+=(--bf16)
    # Re-running resumes from the newest checkpoint in $lm_dir (and is a no-op once training finished).
    watch "$lm_dir/log/train.log"
    $cuda_cmd "$lm_dir/log/train.log" \
      asr-lm-quant train --config "$lm_conf" --train "$text_dir/train.txt" --valid "$text_dir/valid.txt" \
        --vocab "$text_dir/words.txt" --out "$lm_dir" ${train_opts[@]+"${train_opts[@]}"}
  fi
  pids=()
  for part in valid test; do  # both sets at once
    $cuda_cmd "$lm_dir/log/ppl_$part.log" \
      asr-lm-quant ppl --model "$lm_dir" --text "$text_dir/$part.txt" --json "$lm_dir/ppl_$part.json" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  log "Perplexity (with end-of-sentence): $(python -c 'import json, sys
print(", ".join("%s %.2f" % (s, json.load(open(f))["ppl"]) for s, f in zip(("valid", "test"), sys.argv[1:])))' \
    "$lm_dir/ppl_valid.json" "$lm_dir/ppl_test.json")"
fi

# ---------------------------------------------------------------------------------------------------
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
die() { echo "$0: $*" >&2; exit 1; }
lm_name=$(basename "$lm_dir")
lm_dir_of() {  # model dir of an LM name: the full-precision LM, or <lm-dir>_<system>
  if [ "$1" = "$lm_name" ]; then echo "$lm_dir"; else echo "$(dirname "$lm_dir")/$1"; fi
}
quant_names() {
  python3 local/quant_systems.py list "$quant_conf" ${quant_systems:+--only "$quant_systems"}
}

if run_stage 2; then
  log "Stage 2: quantize $lm_dir into the systems of $quant_conf (${lm_dir}_<system>)"
  [ -f "$lm_dir/config.json" ] || die "$lm_dir has no model: run stage 1 first"
  for f in train valid test; do
    [ -f "$text_dir/$f.txt" ] || die "$text_dir/$f.txt missing: run stage 0 first"
  done
  systems=$(quant_names) || exit 1
  thread_opt=()
  [ -n "$quant_threads" ] && thread_opt=(--threads "$quant_threads")
  quantize_one() {  # <system>: one job, its log in <lm-dir>_<system>/log/quantize.log
    local out=${lm_dir}_$1
    # The quantization pipeline runs on the CPU; $train_cmd gives it a CPU slot.
    $train_cmd "$out/log/quantize.log" \
      python3 local/quant_systems.py run "$quant_conf" "$1" --model base="$lm_dir" --out "$out" \
        --train "$text_dir/train.txt" --valid "$text_dir/valid.txt" --test "$text_dir/test.txt" \
        ${thread_opt[@]+"${thread_opt[@]}"}
  }
  # Up to $quant_nj systems at once; a failed one stops none of the others, and the stage fails at the end.
  pids=(); names=(); failed=()
  for sys in $systems; do
    out=${lm_dir}_$sys
    if [ -f "$out/results.json" ]; then
      log "  $sys: done before ($out/results.json)"
      continue
    fi
    log "  $sys: quantizing"; watch "$out/log/quantize.log"
    quantize_one "$sys" &
    pids+=($!); names+=("$sys")
    if [ ${#pids[@]} -ge "$quant_nj" ]; then
      if wait "${pids[0]}"; then log "  $(grep -v '^#' "${lm_dir}_${names[0]}/log/quantize.log" | tail -n 1)"
      else failed+=("${names[0]}"); fi
      pids=(${pids[@]+"${pids[@]:1}"}); names=(${names[@]+"${names[@]:1}"})
    fi
  done
  for i in ${!pids[@]}; do
    if wait "${pids[$i]}"; then log "  $(grep -v '^#' "${lm_dir}_${names[$i]}/log/quantize.log" | tail -n 1)"
    else failed+=("${names[$i]}"); fi
  done
  if [ ${#failed[@]} -gt 0 ]; then
    die "quantizing ${failed[*]} failed; see ${lm_dir}_<system>/log/quantize.log"
  fi
fi

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 3 ]; then
  if [ "$stage" -le 4 ] && { [ -z "$old_lm" ] || [ -z "$lang" ] || [ -z "$eval_data" ]; }; then
    [ -n "$kaldi_swbd_dir" ] || die "stages 3-4 need --kaldi-swbd-dir (or --old-lm, --lang and --eval-data)"
  fi
  if [ -z "$old_lm" ]; then  # the ARPA file, else the lang dir Kaldi built from it (its G.carpa)
    old_lm=$kaldi_swbd_dir/data/local/lm/sw1_fsh.o4g.kn.gz
    [ -f "$old_lm" ] || [ ! -f "$kaldi_swbd_dir/data/lang_sw1_fsh_fg/G.carpa" ] ||
      old_lm=$kaldi_swbd_dir/data/lang_sw1_fsh_fg
  fi
  [ -n "$lang" ] || lang=$kaldi_swbd_dir/data/lang
  decodes=()
  for d in $decode_dirs; do
    d=${d%/}
    case $d in /*) ;; *) [ -n "$kaldi_swbd_dir" ] && d=$kaldi_swbd_dir/$d ;; esac
    decodes+=("$d")
  done
  [ ${#decodes[@]} -gt 0 ] || die "--decode-dirs is empty"
  if [ -z "$rescore_lms" ]; then
    rescore_lms=$lm_name
    systems=$(quant_names) || exit 1
    for sys in $systems; do rescore_lms="$rescore_lms ${lm_name}_$sys"; done
  fi
fi

data_for() {  # data dir of a decode dir: --eval-data, else <s5c>/data/<set> for decode_<set>[_<graph>...]
  if [ -n "$eval_data" ]; then echo "$eval_data"; return 0; fi
  local name cand
  name=$(basename "$1"); name=${name#decode_}; cand=$name
  while :; do
    [ -f "$kaldi_swbd_dir/data/$cand/text" ] && { echo "$kaldi_swbd_dir/data/$cand"; return 0; }
    [ "${cand%_*}" = "$cand" ] && break
    cand=${cand%_*}
  done
  echo "$0: found no data dir for $1 (no $kaldi_swbd_dir/data/${name%%_*}/text); give --eval-data" >&2
  return 1
}
rescored() {  # <dir> <num-jobs>: every job of a rescoring finished
  local j
  for j in $(seq "$2"); do
    [ -f "$1/lat.$j.gz" ] && [ -f "$1/log/rescore.$j.json" ] || return 1
  done
}

if run_stage 3; then
  log "Stage 3: ${rescore_methods// /, } rescoring with: $rescore_lms"
  case $weight in *,*) die "--weight takes one weight (to compare several, run stage 3 again with another --rescore-dir)" ;; esac
  [ -e "$old_lm" ] || die "no such file $old_lm (the lattices' LM: ARPA, G.fst, G.carpa or lang dir; give --old-lm)"
  [ -f "$lang/words.txt" ] || die "no such file $lang/words.txt (give --lang)"
  rescore_cmd=$decode_cmd
  case $device in cuda*) rescore_cmd=$cuda_cmd ;; esac
  # Everything checked before the first job starts.
  for method in $rescore_methods; do
    case $method in nbest|lattice) ;; *) die "unknown rescoring method '$method' (nbest, lattice)" ;; esac
  done
  for lm in $rescore_lms; do
    mdir=$(lm_dir_of "$lm")
    [ -f "$mdir/config.json" ] || die "$mdir holds no model: run stage 1 (or 2 for $lm) first"
  done
  for d in "${decodes[@]}"; do
    [ -f "$d/num_jobs" ] || die "no such file $d/num_jobs (not a Kaldi decode dir?)"
    data_for "$d" >/dev/null || exit 1
  done
  for d in "${decodes[@]}"; do
    data=$(data_for "$d")
    njobs=$(cat "$d/num_jobs")
    dname=$(basename "$d")
    for lm in $rescore_lms; do
      mdir=$(lm_dir_of "$lm")
      for method in $rescore_methods; do
        out=$rescore_dir/${lm}_${method}_$dname
        if rescored "$out" "$njobs"; then
          log "  $lm $method $dname: done before ($out)"
          continue
        fi
        opts=(--cmd "$rescore_cmd" --nj "$nj" --weight "$weight" --acwt "$acwt" --words "$lang/words.txt"
              --device "$device" --token-budget "$token_budget" --skip-scoring true)
        case $method in
          nbest) steps/lmrescore_nbest.sh "${opts[@]}" --N "$nbest" "$old_lm" "$mdir" "$data" "$d" "$out" ;;
          lattice) steps/lmrescore_lattice.sh "${opts[@]}" --beam "$lattice_beam" --epsilon "$lattice_epsilon" \
                     "$old_lm" "$mdir" "$data" "$d" "$out" ;;
        esac
      done
    done
  done
fi

score_dir() {  # <data> <dir>: Hub5 and Kaldi-style scoring unless done after the lattices were written
  local data=$1 dir=$2
  if [ "$dir/scoring/hub5_summary.json" -nt "$dir/lat.1.gz" ]; then
    echo "$dir: Hub5 scoring done before"
  else
    steps/score_hub5.sh --cmd "$decode_cmd" --nj 1 $hub5_scoring_opts "$data" "$lang" "$dir" >/dev/null || return 1
  fi
  if [ "$kaldi_scoring" = true ]; then
    if [ "$dir/scoring_kaldi/best_wer" -nt "$dir/lat.1.gz" ]; then
      echo "$dir: Kaldi scoring done before"
    else
      steps/score_kaldi.sh --cmd "$decode_cmd" $kaldi_scoring_opts "$data" "$lang" "$dir" >/dev/null || return 1
    fi
  fi
}

if run_stage 4; then
  log "Stage 4: Hub5 scoring$([ "$kaldi_scoring" = true ] && echo ' and Kaldi-style scoring') of the first pass and the rescored dirs"
  [ -f "$lang/words.txt" ] || die "no such file $lang/words.txt (give --lang)"
  for d in "${decodes[@]}"; do
    [ -f "$d/num_jobs" ] || die "no such file $d/num_jobs (not a Kaldi decode dir?)"
    data=$(data_for "$d") || exit 1
    for f in text segments reco2file_and_channel stm glm; do
      [ -f "$data/$f" ] || die "no such file $data/$f (made by s5c's local/eval2000_data_prep.sh)"
    done
    for lm in $rescore_lms; do
      for method in $rescore_methods; do
        out=$rescore_dir/${lm}_${method}_$(basename "$d")
        rescored "$out" "$(cat "$d/num_jobs")" || die "$out is not complete: run stage 3 first"
      done
    done
  done
  for d in "${decodes[@]}"; do
    data=$(data_for "$d")
    dname=$(basename "$d")
    njobs=$(cat "$d/num_jobs")
    # The first pass is scored through links, so that nothing is written into the Kaldi directory.
    first=$rescore_dir/firstpass_$dname
    mkdir -p "$first"
    for j in $(seq "$njobs"); do
      [ -f "$d/lat.$j.gz" ] || die "no such file $d/lat.$j.gz"
      ln -sfn "$(readlink -f "$d/lat.$j.gz")" "$first/lat.$j.gz"
    done
    echo "$njobs" > "$first/num_jobs"
    dirs=("$first")
    for lm in $rescore_lms; do
      for method in $rescore_methods; do
        dirs+=("$rescore_dir/${lm}_${method}_$dname")
      done
    done
    # Up to $nj directories scored at once.
    pids=()
    failed=0
    for dir in "${dirs[@]}"; do
      score_dir "$data" "$dir" &
      pids+=($!)
      if [ ${#pids[@]} -ge "$nj" ]; then
        wait "${pids[0]}" || failed=1
        pids=(${pids[@]+"${pids[@]:1}"})
      fi
    done
    for pid in ${pids[@]+"${pids[@]}"}; do wait "$pid" || failed=1; done
    [ $failed -eq 0 ] || die "scoring failed; see <dir>/scoring/log/ and <dir>/scoring_kaldi/log/ under $rescore_dir"
    for dir in "${dirs[@]}"; do
      log "  $(basename "$dir"): $(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))["subsets"]
print(", ".join("%s %.1f" % (k, v["wer"]) for k, v in s.items()))' "$dir/scoring/hub5_summary.json")"
    done
  done
fi

if run_stage 5; then
  log "Stage 5: results table exp/results.md, exp/results.json"
  lm_opts=()
  for lm in $rescore_lms; do lm_opts+=(--lm "$lm=$(lm_dir_of "$lm")"); done
  dec_opts=()
  for d in "${decodes[@]}"; do dec_opts+=(--decode "$(basename "$d")"); done
  python3 local/results.py --rescore-dir "$rescore_dir" --methods "$rescore_methods" --nbest "$nbest" \
    --weight "$weight" "${lm_opts[@]}" "${dec_opts[@]}" --out exp
  cat exp/results.md
fi

log "Done (stages $stage..$stop_stage)."
