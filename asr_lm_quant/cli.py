"""The ``asr-lm-quant`` command: one entry point, one subcommand per task.

Each concern's package has a ``commands.py`` with ``register(subparsers)``; the subcommands only parse
arguments and call library functions. Errors in user input (``InputError``) print one clear line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from asr_lm_quant import __version__, progress
from asr_lm_quant.cli_args import ArgumentParser
from asr_lm_quant.errors import InputError

# Order here is the order in --help: one group of commands per concern.
COMMAND_MODULES = [
    ("asr_lm_quant.text.commands", "LM text and vocabulary"),
    ("asr_lm_quant.ngram.commands", "n-gram LMs"),
    ("asr_lm_quant.lm.commands", "neural LMs"),
    ("asr_lm_quant.quant.commands", "quantization"),
    ("asr_lm_quant.kaldi.commands", "Kaldi lattices"),
    ("asr_lm_quant.rescore.commands", "rescoring"),
    ("asr_lm_quant.scoring.commands", "scoring (WER)"),
    ("asr_lm_quant.report.commands", "reports"),
]

DOCS = ("Documentation: README.md (set-up, quick start, the three routes), docs/cli.md (option names and "
        "conventions); 'asr-lm-quant COMMAND --help' shows each command's options and an example.")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="asr-lm-quant",
        description="Train, quantize and apply Transformer LMs for rescoring Kaldi lattices and n-best lists.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    listing = []
    for name, concern in COMMAND_MODULES:
        known = set(sub.choices)
        importlib.import_module(name).register(sub)
        listing.append(f"\n{concern}:" if listing else f"{concern}:")
        listing += [f"  {a.dest:<18} {a.help}" for a in sub._choices_actions if a.dest not in known]
    # The commands are listed once, grouped, below; argparse's flat list would repeat them.
    sub._choices_actions.clear()
    sub.help = "one of the commands below"
    parser.epilog = "\n".join(listing) + "\n\n" + DOCS
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    name = f"asr-lm-quant {args.command}"
    try:
        with progress.session(getattr(args, "quiet", False)):
            rc = args.func(args)
    except (InputError, FileExistsError) as e:
        return _fail(name, e)
    except KeyboardInterrupt as e:
        print(f"{name}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`... | head`): not an error of ours to report.
        sys.stderr.close()
        return 1
    except OSError as e:
        # Permissions, a directory where a file was expected, a full disk ... : the file and the reason.
        where = f"{e.filename}: " if e.filename else ""
        return _fail(name, f"{where}{e.strerror or e}")
    except UnicodeDecodeError as e:
        return _fail(name, f"input is not valid UTF-8 ({e.reason} at byte {e.start})")
    return int(rc or 0)


def _fail(name: str, message) -> int:
    print(f"{name}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
