"""The ``asr-lm-quant`` command: one entry point, one subcommand per task.

Each concern's package has a ``commands.py`` with ``register(subparsers)``; the subcommands only parse
arguments and call library functions. Errors in user input (``InputError``) print one clear line and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from asr_lm_quant import __version__
from asr_lm_quant.errors import InputError

# Order here is the order in --help.
COMMAND_MODULES = [
    "asr_lm_quant.text.commands",
    "asr_lm_quant.ngram.commands",
    "asr_lm_quant.lm.commands",
    "asr_lm_quant.quant.commands",
    "asr_lm_quant.kaldi.commands",
    "asr_lm_quant.rescore.commands",
    "asr_lm_quant.scoring.commands",
    "asr_lm_quant.report.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asr-lm-quant",
        description="Train, quantize and apply Transformer LMs for rescoring Kaldi lattices and n-best lists.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except InputError as e:
        print(f"asr-lm-quant {args.command}: error: {e}", file=sys.stderr)
        return 1
    except FileExistsError as e:
        print(f"asr-lm-quant {args.command}: error: {e}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
