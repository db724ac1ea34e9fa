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
# See README.md for how to point this at an existing s5c setup.

set -euo pipefail

stage=0
stop_stage=100
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
kaldi_nnlm=              # a Transformer trained by Kaldi's local/pytorchnn/run_nnlm.sh (its model.pt):
                         # stage 1 then imports it instead of training one
kaldi_nnlm_words=        # that model's words.txt (default: <kaldi-swbd-dir>/data/pytorchnn/words.txt)
kaldi_nnlm_heads=8       # its attention heads (run_nnlm.sh: nhead=8)

help_message="Usage: $0 [options]
Options:
  --stage <n>              first stage to run (default: $stage)
  --stop-stage <n>         last stage to run (default: $stop_stage)
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
  --kaldi-nnlm <model.pt>  import this Kaldi pytorchnn Transformer in stage 1 instead of training
  --kaldi-nnlm-words <f>   its words.txt (default: <kaldi-swbd-dir>/data/pytorchnn/words.txt)
  --kaldi-nnlm-heads <n>   its attention heads (default: $kaldi_nnlm_heads)"

cd "$(dirname "$0")"
. ./path.sh
. ./cmd.sh
. steps/parse_options.sh || exit 1

if [ $# -ne 0 ]; then
  echo "$0: unexpected arguments: $*" >&2
  printf '%b\n' "$help_message" >&2
  exit 1
fi

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"
}

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
    log "Stage 1: import Kaldi's Transformer LM $kaldi_nnlm into $lm_dir"
    if [ -z "$kaldi_nnlm_words" ]; then
      [ -n "$kaldi_swbd_dir" ] || { echo "$0: --kaldi-nnlm needs --kaldi-nnlm-words or --kaldi-swbd-dir" >&2; exit 1; }
      kaldi_nnlm_words=$kaldi_swbd_dir/data/pytorchnn/words.txt
    fi
    if [ -f "$lm_dir/model.safetensors" ]; then
      echo "$0: $lm_dir already holds a model; not importing again"
    else
      $train_cmd "$lm_dir/log/import.log" \
        asr-lm-quant import-kaldi --model-pt "$kaldi_nnlm" --words "$kaldi_nnlm_words" \
          --nhead "$kaldi_nnlm_heads" --out "$lm_dir"
    fi
  else
    log "Stage 1: train the Transformer LM ($lm_conf) into $lm_dir"
    [ -f "$text_dir/train.txt" ] || { echo "$0: $text_dir/train.txt missing: run stage 0 first" >&2; exit 1; }
    train_opts=()
    [ "$bf16" = true ] && train_opts+=(--bf16)
    # Re-running resumes from the newest checkpoint in $lm_dir (and is a no-op once training finished).
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
# Later stages go here (each `if [ "$stage" -le N ] && [ "$stop_stage" -ge N ]; then ... fi`):
#   2  quantize the LM (uniform low-bit and Hessian-guided mixed precision)   -> exp/lm_q*/
#   3  n-best and lattice rescoring of the s5c decode dirs
#      ($kaldi_swbd_dir/exp/chain/*/decode_eval2000_*) with the full and quantized LMs
#   4  scoring (Kaldi sweeps and sclite/hubscr on eval2000, swbd and callhm) and the results table
# ---------------------------------------------------------------------------------------------------

log "Done (stages $stage..$stop_stage)."
