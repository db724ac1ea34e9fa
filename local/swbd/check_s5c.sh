#!/usr/bin/env bash
# Check that a Kaldi egs/swbd/s5c directory has what LM text preparation reads, and say which Kaldi
# step makes whatever is missing.
#   local/check_s5c.sh [--use-fisher true|false] <s5c-dir>

use_fisher=true
help_message="Usage: $0 [--use-fisher true|false] <kaldi-egs-swbd-s5c-dir>"
. "$(dirname "$(readlink -f "$0")")/../../steps/parse_options.sh" || exit 1

if [ $# -ne 1 ]; then
  printf '%b\n' "$help_message" >&2
  exit 1
fi
dir=$1
if [ ! -d "$dir" ]; then
  echo "$0: $dir is not a directory (expected your Kaldi egs/swbd/s5c)" >&2
  exit 1
fi

missing=0
need() {  # <file> <what makes it>
  if [ ! -s "$dir/$1" ]; then
    echo "$0: missing $dir/$1 (made by $2)" >&2
    missing=1
  fi
}
need data/train_nodev/text "s5c run.sh: local/swbd1_data_prep.sh, then the train_dev/train_nodev split"
need data/train_dev/text "s5c run.sh: the train_dev/train_nodev split (utils/subset_data_dir.sh --first)"
need data/eval2000/text "s5c run.sh: local/eval2000_data_prep.sh"
need data/lang/words.txt "s5c run.sh: utils/prepare_lang.sh"
if [ "$use_fisher" = true ]; then
  need data/local/lm/fisher/text1.gz \
    "s5c run.sh: local/swbd1_train_lms.sh with the Fisher transcripts (or run with --use-fisher false)"
fi
if [ $missing -ne 0 ]; then
  echo "$0: $dir is not a complete swbd s5c setup; see recipes/swbd/README.md" >&2
  exit 1
fi
echo "$0: $dir has the Switchboard text, eval2000 text, data/lang/words.txt$([ "$use_fisher" = true ] && echo ' and the Fisher LM text')"
