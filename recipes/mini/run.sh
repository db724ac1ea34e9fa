#!/usr/bin/env bash
# The mini recipe: the whole toolkit on data anyone can get, with a real recogniser.
#
#   ./run.sh                      # make demo: both LMs and their systems, about 40 minutes on 2 CPU cores
#   ./run.sh --larger-lm false    # the base LM and its systems only: about 20 minutes
#   ./run.sh --quick              # a tiny version of everything (CI), in quick/: a few minutes; both LMs
#                                 # (lm, lm_deep) use conf/lm_tiny.json there
#   ./run.sh --stage 5 --stop-stage 6
#
# Stages:
#   0  LM text: WikiText-2 normalised as ASR output (lower case, no punctuation) -> data/lm
#   1  First-pass LM: Kneser-Ney 3-gram (exp/ngram/3gram.arpa) and its perplexity on valid/test
#   2  Test audio and first pass: test sentences synthesised with festival (three voices), decoded with
#      pocketsphinx using the 3-gram; its word lattices become a Kaldi decode dir
#      (exp/ngram/decode_test/lat.JOB.gz, CompactLattices with 3-gram graph costs), scored Kaldi style;
#      the test set is split in halves: dev (tuning) and eval (reporting)
#   3  Transformer LMs: the mini configuration (exp/lm) and a deeper one (exp/lm_deep; --larger-lm false: not)
#   4  Quantization systems (uniform 8/4/2 bits; 16x mixed precision by Hessian trace, KL divergence and
#      search; the deeper LM (unless --larger-lm false) compressed to the base LM's size and 16x) -> exp/quant
#   5  N-best and lattice rescoring with every model: weights tuned on dev, WER reported on eval
#   6  Report: exp/results.md, exp/results.json and plots
# Logs go to <dir>/log/. Every stage can be re-run; expensive results (audio, lattices) are cached.

set -euo pipefail

stage=0
stop_stage=100
quick=false
cmd=cmd.sh               # one job runner for every stage (run.pl, queue.pl, slurm.pl ...); cmd.sh: its runners
nj=2
corpus_dir=../../../shared/data/wikitext-2   # WikiText-2 train/valid/test (.txt, .txt.xz or .txt.gz); downloaded
                                             # into data/download/ (checksums pinned) when not there
max_vocab=10000          # LM vocabulary: the most frequent training words (with <s> and <unk>)
quick_corpus_lines=3000  # --quick: raw training lines kept (a third of that for valid and test)
num_sents=600            # test sentences to synthesise (halves of 300: tuning and evaluation)
voices=slt,kal,ked       # festival voices, alternating across utterances
snr=                     # add white noise at this SNR (dB); empty = clean audio
seed=0
nbest=20                 # N-best size for rescoring and the N-best oracle
weights=0.5,0.7,0.9      # NN LM interpolation weights tried on the dev half
lm_conf=conf/lm.json
lm_deep_conf=conf/lm_deep.json
larger_lm=true           # also train the deeper LM (lm_deep_conf) and run the systems of quant_conf made from it
                         # (the larger-model claim: it needs 5 epochs; false saves about half the time)
lm_epochs=               # overrides max_epochs of the LM configurations (empty: the configurations decide:
                         # 3 epochs for the base LM, 5 for the deeper one, a validation after each, the best kept)
lm_max_steps=            # caps the training steps of both LMs (empty: the configurations decide)
bf16=auto                # bf16 autocast for LM training: auto = when the CPU has AVX512-BF16 or AMX (elsewhere
                         # bf16 is emulated and several times slower than fp32)
quant_conf=conf/quant.json
cache_dir=cache          # audio and lattice cache (content-keyed; safe to share between runs)
threads=2

help_message="Usage: $0 [options]
Options:
  --stage <n> / --stop-stage <n>   stages to run (default: $stage..$stop_stage)
  --quick                          tiny version: few sentences, tiny models, short training
  --cmd <runner>                   job runner for every stage (default: those of cmd.sh)
  --nj <n>                         parallel jobs (default: $nj)
  --corpus-dir <dir>               WikiText-2 (default: $corpus_dir)
  --max-vocab <n>                  LM vocabulary size (default: $max_vocab)
  --num-sents <n>                  test sentences (default: $num_sents)
  --voices <list>                  festival voices: slt,kal,ked (default: $voices)
  --snr <dB>                       add white noise at this SNR (default: none)
  --nbest <n>                      N-best size (default: $nbest)
  --weights <list>                 NN LM weights tuned on the dev half (default: $weights)
  --lm-conf / --lm-deep-conf <f>   Transformer LM configurations
  --larger-lm <true|false>         also the deeper LM and its quantization systems (default: $larger_lm)
  --lm-epochs <n>                  override the LM configurations' max_epochs
  --lm-max-steps <n>               cap the LM training steps
  --bf16 <true|false|auto>         bf16 autocast in LM training (default: $bf16)
  --quant-conf <f>                 quantization systems (default: $quant_conf)
  --cache-dir <dir>                audio/lattice cache (default: $cache_dir)"

# Kaldi-style options take a value; --quick alone means --quick true.
args=()
for a in "$@"; do
  if [ "$a" = --quick ]; then args+=(--quick true); else args+=("$a"); fi
done
set -- "${args[@]+"${args[@]}"}"

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

if [ "$quick" = true ]; then
  num_sents=10
  lm_conf=conf/lm_tiny.json
  lm_deep_conf=conf/lm_tiny.json
  larger_lm=true           # tiny models: every path is exercised
  lm_epochs=${lm_epochs:-1}
  lm_max_steps=${lm_max_steps:-40}
  max_vocab=3000
  if [ -f conf/quant_quick.json ]; then quant_conf=conf/quant_quick.json
  else echo "$0: warning: no conf/quant_quick.json; --quick runs the full $quant_conf" >&2; fi
  weights=0.5,0.8
  nbest=10
fi

# Options are checked before any stage runs (a typo must not surface an hour later, in stage 5).
for opt in stage stop_stage seed; do
  [[ "${!opt}" =~ ^[0-9]+$ ]] || { echo "$0: --${opt//_/-} must be a non-negative integer, not '${!opt}'" >&2; exit 1; }
done
for opt in nj num_sents nbest max_vocab threads; do
  [[ "${!opt}" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --${opt//_/-} must be a positive integer, not '${!opt}'" >&2; exit 1; }
done
for opt in lm_epochs lm_max_steps; do
  if [ -n "${!opt}" ] && ! [[ "${!opt}" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: --${opt//_/-} must be a positive integer (or empty), not '${!opt}'" >&2; exit 1
  fi
done
w_re='(0(\.[0-9]*)?|\.[0-9]+|1(\.0*)?)'
if ! [[ "$weights" =~ ^$w_re(,$w_re)*$ ]]; then
  echo "$0: --weights must be a comma-separated list of interpolation weights in [0, 1], not '$weights'" >&2
  exit 1
fi
case "$bf16" in true|false|auto) ;; *) echo "$0: --bf16 must be true, false or auto, not '$bf16'" >&2; exit 1 ;; esac
case "$quick" in true|false) ;; *) echo "$0: --quick must be true or false, not '$quick'" >&2; exit 1 ;; esac
case "$larger_lm" in true|false) ;; *) echo "$0: --larger-lm must be true or false, not '$larger_lm'" >&2; exit 1 ;; esac

# --quick works in quick/ (its own data/ and exp/): a full run here later must not meet its tiny models. Paths
# given relative to the recipe stay so; the cache is shared (content-keyed).
if [ "$quick" = true ]; then
  abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
  corpus_dir=$(abspath "$corpus_dir"); cache_dir=$(abspath "$cache_dir")
  lm_conf=$(abspath "$lm_conf"); lm_deep_conf=$(abspath "$lm_deep_conf"); quant_conf=$(abspath "$quant_conf")
  mkdir -p quick
  for d in conf local steps; do ln -sfn ../$d quick/$d; done
  cd quick
fi

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"
}
run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
# The long steps write to logs, not to the terminal: say which one to follow (a path that works from anywhere).
watch() { case $1 in /*) log "  follow it with: tail -f $1" ;; *) log "  follow it with: tail -f $PWD/$1" ;; esac; }
export OMP_NUM_THREADS=$threads
start_time=$(date +%s)

if [ "$quick" = true ]; then
  log "Quick run in quick/: $num_sents sentences, ${quick_corpus_lines} lines of training text, tiny LMs; a few minutes."
  log "Both LMs use the tiny configuration ($(basename "$lm_conf")): 'lm_deep' here only exercises the deeper LM's"
  log "path (its training, quantization systems and rescoring), it is not deeper."
else
  lms="the base Transformer LM"
  [ "$larger_lm" = true ] && lms="the base and the deeper Transformer LMs"
  log "Full run: $num_sents synthesised sentences decoded with pocketsphinx, $lms and their quantization"
  log "systems of $quant_conf, N-best and lattice rescoring, the report. On 2 CPU cores with AVX512-BF16: about"
  log "40 minutes (20 with --larger-lm false); about twice that without native bf16. Later runs reuse cached"
  log "audio and lattices."
fi

# ------------------------------------------------------------------------------------------------
if run_stage 0; then
  log "Stage 0: LM text from WikiText-2 -> data/lm"
  # The corpus: --corpus-dir (by default ../shared) or $ASR_LM_QUANT_WIKITEXT2 when they hold it (checked
  # against pinned checksums), else a download into data/download/wikitext-2 (also checked).
  corpus=$(python3 local/get_wikitext2.py --search "$corpus_dir" --dest data/download/wikitext-2) || exit 1
  log "Stage 0: WikiText-2 read from $corpus"
  files=()
  for s in train valid test; do
    for ext in .txt .txt.xz .txt.gz; do [ -f "$corpus/$s$ext" ] && { files+=("$corpus/$s$ext"); break; }; done
  done
  if [ "$quick" = true ]; then
    # The first lines of each split only (valid and test a third as many as train).
    mkdir -p data/local/corpus
    i=0
    for s in train valid test; do
      n=$quick_corpus_lines
      [ $s = train ] || n=$((quick_corpus_lines / 3))
      python3 - "${files[$i]}" "$n" > data/local/corpus/$s.txt <<'PY'
import gzip, lzma, sys
path, n = sys.argv[1], int(sys.argv[2])
op = lzma.open if path.endswith(".xz") else gzip.open if path.endswith(".gz") else open
with op(path, "rt", encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i >= n:
            break
        sys.stdout.write(line)
PY
      files[$i]=data/local/corpus/$s.txt
      i=$((i + 1))
    done
  fi
  watch data/lm/log/prepare_text.log
  $train_cmd data/lm/log/prepare_text.log \
    asr-lm-quant prepare-text plain --train "${files[0]}" --valid "${files[1]}" --test "${files[2]}" \
      --normalize asr --max-vocab "$max_vocab" --out data/lm --overwrite
fi

# ------------------------------------------------------------------------------------------------
if run_stage 1; then
  log "Stage 1: Kneser-Ney 3-gram on data/lm/train.txt -> exp/ngram"
  $train_cmd exp/ngram/log/train.log \
    asr-lm-quant ngram-train --text data/lm/train.txt --out exp/ngram/3gram.arpa --order 3 \
      --vocab data/lm/words.txt --json exp/ngram/train.json --overwrite
  for s in valid test; do
    $train_cmd exp/ngram/log/ppl_$s.log \
      asr-lm-quant ngram-ppl --lm exp/ngram/3gram.arpa --text data/lm/$s.txt --json exp/ngram/ppl_$s.json
  done
  python3 local/make_lang.py data/lm/words.txt data/lang
fi

# ------------------------------------------------------------------------------------------------
if run_stage 2; then
  log "Stage 2: $num_sents test sentences, festival ($voices) -> data/test; pocketsphinx -> exp/ngram/decode_test"
  for cmd in text2wave festival; do
    if ! command -v $cmd >/dev/null; then
      bash steps/install_system_deps.sh || {
        echo "$0: festival is needed: sudo apt-get install festival festvox-us-slt-hts festvox-kallpc16k" >&2; exit 1; }
    fi
  done
  snr_opt=()
  [ -n "$snr" ] && snr_opt=(--snr "$snr")
  watch data/local/log/prepare_test.log
  $train_cmd data/local/log/prepare_test.log \
    python3 local/prepare_test.py --lm-dir data/lm --data data/test --cache-dir "$cache_dir/audio" \
      --num "$num_sents" --voices "$voices" --seed "$seed" --nj "$nj" "${snr_opt[@]+"${snr_opt[@]}"}"
  dir=exp/ngram/decode_test
  rm -f $dir/lat.*.gz
  watch "$dir/log/decode.1.log"
  $decode_cmd JOB=1:$nj $dir/log/decode.JOB.log \
    python3 local/decode.py --job JOB --nj $nj --cache-dir "$cache_dir/lattices" \
      data/test exp/ngram/3gram.arpa data/lang/words.txt $dir
  echo $nj > $dir/num_jobs
  steps/score_kaldi.sh --cmd "$decode_cmd" data/test data/lang $dir
  python3 local/oracle.py --n "$nbest" data/test data/lang/words.txt $dir > $dir/log/oracle.log
  log "First pass: $(cat $dir/scoring_kaldi/best_wer); oracle: $(cat $dir/log/oracle.log)"
  python3 local/split_halves.py data/test $dir
  for half in dev eval; do
    steps/score_kaldi.sh --cmd "$decode_cmd" data/test_$half data/lang ${dir}_$half
    python3 local/oracle.py --n "$nbest" data/test_$half data/lang/words.txt ${dir}_$half > /dev/null
  done
  python3 local/tune.py --out exp/ngram/first_pass.json none=${dir}_dev,${dir}_eval
fi

# ------------------------------------------------------------------------------------------------
if run_stage 3; then
  epoch_opt=()
  # One validation at the end of each epoch: the demo's budget is better spent on training.
  [ -n "$lm_epochs" ] && epoch_opt=(--max-epochs "$lm_epochs" --set eval_every=0)
  [ -n "$lm_max_steps" ] && epoch_opt+=(--set max_steps="$lm_max_steps")
  if [ "$bf16" = auto ]; then
    bf16=false
    grep -q -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && bf16=true
    log "Stage 3: bf16 autocast: $bf16 (auto, from the CPU's flags)"
  fi
  [ "$bf16" = true ] && epoch_opt+=(--bf16)
  lms=(lm:$lm_conf)
  [ "$larger_lm" = true ] && lms+=(lm_deep:$lm_deep_conf)
  for pair in "${lms[@]}"; do
    name=${pair%%:*}; conf=${pair#*:}
    log "Stage 3: Transformer LM $conf -> exp/$name"
    # Re-running resumes from the newest checkpoint (and does nothing once training finished).
    watch exp/$name/log/train.log
    $cuda_cmd exp/$name/log/train.log \
      asr-lm-quant train --config "$conf" --train data/lm/train.txt --valid data/lm/valid.txt \
        --vocab data/lm/words.txt --out exp/$name --threads "$threads" "${epoch_opt[@]+"${epoch_opt[@]}"}"
    for s in valid test; do
      $cuda_cmd exp/$name/log/ppl_$s.log \
        asr-lm-quant ppl --model exp/$name --text data/lm/$s.txt --json exp/$name/ppl_$s.json
    done
  done
fi

# ------------------------------------------------------------------------------------------------
if run_stage 4; then
  log "Stage 4: quantization systems of $quant_conf -> exp/quant"
  if [ ! -f "$quant_conf" ]; then
    echo "$0: $quant_conf is missing: no quantization systems to run" >&2; exit 1
  fi
  models=base
  [ "$larger_lm" = true ] && models=base,deep
  only=$(python3 local/quant_systems.py "$quant_conf" $models) || exit 1
  sweep_opts=(--systems "$quant_conf" --only "$only" --model base=exp/lm --model deep=exp/lm_deep
              --train data/lm/train.txt --valid data/lm/valid.txt --test data/lm/test.txt)
  if [ "$nj" -gt 1 ]; then
    watch exp/quant/log/quant_sweep.1.log
    # $nj jobs share the systems (each takes the next one no other job holds) with the threads split
    # between them: small models use two single-thread jobs far better than one two-thread job.
    $train_cmd JOB=1:$nj exp/quant/log/quant_sweep.JOB.log \
      asr-lm-quant quant-sweep --worker "${sweep_opts[@]}" --threads $(( threads / nj > 0 ? threads / nj : 1 )) exp/quant
  fi
  [ "$nj" -gt 1 ] || watch exp/quant/log/quant_sweep.log
  $train_cmd exp/quant/log/quant_sweep.log \
    asr-lm-quant quant-sweep "${sweep_opts[@]}" --threads "$threads" exp/quant
fi

# ------------------------------------------------------------------------------------------------
if run_stage 5; then
  log "Stage 5: N-best ($nbest-best) and lattice rescoring; weights $weights tuned on dev, reported on eval"
  src=exp/ngram/decode_test
  python3 local/systems.py exp > exp/rescore_systems.txt
  # The two jobs run at once: each gets half the threads (OpenMP threads that outnumber the cores wait on
  # each other and run several times slower).
  export OMP_NUM_THREADS=$(( threads / 2 > 0 ? threads / 2 : 1 ))
  # The weights as rescore.py names its output dirs (0.50 -> 0.5).
  wnames=$(python3 -c 'import sys; print(" ".join(f"{float(w):g}" for w in sys.argv[1].split(",")))' "$weights")
  while read -r name model reference <&3; do
    out=exp/rescore/$name
    done_all=true
    for method in nbest lattice; do
      for w in $wnames; do
        for half in dev eval; do
          [ -f $out/$method/${half}_w$w/scoring_kaldi/sweep.json ] || done_all=false
        done
      done
    done
    if $done_all; then log "  $name: rescored"; continue; fi
    # Job 1 is the dev half, job 2 the eval half; each rescores with every weight, then scores.
    log "  $name: rescoring"; watch $out/log/rescore.1.log
    $decode_cmd JOB=1:2 $out/log/rescore.JOB.log \
      python3 local/rescore.py --half JOB --weights "$weights" --n "$nbest" \
        exp/ngram/3gram.arpa "$model" data/lang/words.txt data/test $src $out
  done 3< exp/rescore_systems.txt
  # Weights, LMWT and penalty chosen on dev (cheap: re-done on every run). A quantized system is also
  # scored at its full-precision LM's choice (tuned first: those lines come first), so that its
  # difference from full precision is not blurred by a different choice on dev.
  while read -r name model reference <&3; do
    out=exp/rescore/$name
    mkdir -p $out/log
    for method in nbest lattice; do
      pairs=()
      for w in $wnames; do pairs+=("$w=$out/$method/dev_w$w,$out/$method/eval_w$w"); done
      ref_opt=()
      [ "$reference" != - ] && ref_opt=(--reference exp/rescore/$reference/$method.json)
      python3 local/tune.py --out $out/$method.json "${ref_opt[@]+"${ref_opt[@]}"}" "${pairs[@]}" \
        > $out/log/tune_$method.log
      log "  $name $method: $(cat $out/log/tune_$method.log)"
    done
  done 3< exp/rescore_systems.txt
  export OMP_NUM_THREADS=$threads
fi

# ------------------------------------------------------------------------------------------------
if run_stage 6; then
  log "Stage 6: report -> exp/results.md, exp/results.json, exp/plots/"
  asr-lm-quant report --exp exp --layout conf/report_layout.json --out exp
  python3 local/check_outputs.py exp
  cat exp/results.md
fi

log "Done (stages $stage..$stop_stage) in $(( ($(date +%s) - start_time) / 60 )) min."
