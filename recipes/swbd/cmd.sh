# How jobs run. By default on this machine, with steps/run.pl (on PATH through path.sh); it takes and
# ignores the queue options below, so they can stay in the recipe.
#
# On a cluster, use Kaldi's runners from $KALDI_ROOT/egs/wsj/s5/utils/ (queue.pl for Grid Engine,
# slurm.pl for Slurm): either set ASR_LM_QUANT_QUEUE=sge or ASR_LM_QUANT_QUEUE=slurm (with KALDI_ROOT
# set) before running, or edit the lines below, e.g.
#   export train_cmd="$KALDI_ROOT/egs/wsj/s5/utils/queue.pl --mem 8G"
#   export cuda_cmd="$KALDI_ROOT/egs/wsj/s5/utils/queue.pl --gpu 1 --mem 16G"
# Kaldi's conf/queue.conf or conf/slurm.conf (see their --config option) says how options map to the queue.
case "${ASR_LM_QUANT_QUEUE:-local}" in
  local)
    export train_cmd="run.pl --mem 4G"
    export decode_cmd="run.pl --mem 4G"
    export cuda_cmd="run.pl --gpu 1"
    ;;
  sge|slurm)
    __runner=queue.pl
    [ "$ASR_LM_QUANT_QUEUE" = slurm ] && __runner=slurm.pl
    __runner=${KALDI_ROOT:-/nonexistent}/egs/wsj/s5/utils/$__runner
    if [ ! -x "$__runner" ]; then
      echo "cmd.sh: ASR_LM_QUANT_QUEUE=$ASR_LM_QUANT_QUEUE needs $__runner (set KALDI_ROOT to your Kaldi)" >&2
      return 1
    fi
    export train_cmd="$__runner --mem 4G"
    export decode_cmd="$__runner --mem 4G"
    export cuda_cmd="$__runner --gpu 1 --mem 16G"
    unset __runner
    ;;
  *)
    echo "cmd.sh: ASR_LM_QUANT_QUEUE must be local, sge or slurm, not '$ASR_LM_QUANT_QUEUE'" >&2
    return 1
    ;;
esac
