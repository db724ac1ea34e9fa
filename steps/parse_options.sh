# Kaldi-style option parsing for recipe and step scripts; source it, do not run it.
#
#   stage=0
#   stop_stage=100
#   nj=4
#   cmd=run.pl
#   help_message="Usage: $0 [options] <data-dir>"
#   . steps/parse_options.sh || exit 1
#   # "$@" now holds only the positional arguments.
#
# Every variable set before sourcing becomes an option: `--stop-stage 3` and `--stop_stage 3` both set
# stop_stage. `--name=value` is accepted as well as `--name value`. A variable whose default is true or
# false only takes true or false. `--config FILE` sources FILE (shell assignments) before the other
# options are applied, so the command line wins over the file. `--help` / `-h` print $help_message.
# An option for an undeclared variable is an error. Same interface as Kaldi's utils/parse_options.sh.

__po_die() {
  echo "$0: $*" >&2
  exit 1
}

# Config files first, so that explicit options override them.
__po_args=("$@")
for ((__po_i = 0; __po_i < ${#__po_args[@]}; __po_i++)); do
  __po_a=${__po_args[$__po_i]}
  __po_file=
  if [ "$__po_a" = "--config" ]; then
    __po_file=${__po_args[$((__po_i + 1))]:-}
    [ -n "$__po_file" ] || __po_die "option --config needs a file"
  elif [ "${__po_a#--config=}" != "$__po_a" ]; then
    __po_file=${__po_a#--config=}
  fi
  if [ -n "$__po_file" ]; then
    [ -f "$__po_file" ] || __po_die "config file '$__po_file' does not exist"
    # shellcheck disable=SC1090
    . "$__po_file" || __po_die "error in config file '$__po_file'"
  fi
done
unset __po_args __po_i __po_a __po_file

while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      if [ -z "${help_message:-}" ]; then
        echo "No help found." >&2
      else
        printf '%b\n' "$help_message" >&2
      fi
      exit 0 ;;
    --)
      shift; break ;;
    --config)
      shift 2 ;;
    --config=*)
      shift ;;
    --*=*)
      __po_opt=${1%%=*}
      __po_val=${1#*=}
      shift ;;
    --*)
      __po_opt=$1
      [ $# -ge 2 ] || __po_die "option $1 needs a value"
      __po_val=$2
      shift 2 ;;
    *)
      break ;;
  esac
  if [ -n "${__po_opt:-}" ]; then
    __po_name=${__po_opt#--}
    __po_name=${__po_name//-/_}
    case "$__po_name" in
      ''|[0-9]*|*[!A-Za-z0-9_]*) __po_die "invalid option $__po_opt" ;;
    esac
    # Only variables the script declared are options.
    if eval "[ -z \"\${$__po_name+set}\" ]"; then
      __po_die "invalid option $__po_opt"
    fi
    eval "__po_old=\${$__po_name}"
    if [ "$__po_old" = true ] || [ "$__po_old" = false ]; then
      case "$__po_val" in
        true|false) ;;
        *) __po_die "expected true or false for $__po_opt, got '$__po_val'" ;;
      esac
    fi
    printf -v "$__po_name" '%s' "$__po_val"
    unset __po_opt __po_val __po_name __po_old
  fi
done

# An empty --cmd usually means cmd.sh was not sourced.
if [ "${cmd+set}" = set ] && [ -z "$cmd" ]; then
  __po_die "empty argument to --cmd option"
fi

true  # the sourcing `. parse_options.sh || exit 1` must see success
