"""The command line's shared parts: value types, the help formatter, hidden aliases, ``--json FILE``.

Every subcommand checks its option values here, through argparse ``type=`` callables, so a bad value is
argparse's one-line usage error (exit 2) before any work starts. The rules these parts enforce (one name per
concept, help for every option, an example per command) are written down in docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from asr_lm_quant.atomic import atomic_open

# --- value types: each returns the parsed value or raises ArgumentTypeError (argparse prints its message) ---


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _bounded(kind, what: str, lo=None, hi=None, lo_open=False):
    def parse(text: str):
        value = _number(text.strip(), kind, what)
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'above' if lo_open else 'at least'} {lo}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at most {hi}")
        return value
    return parse


positive_int = _bounded(int, "a whole number", lo=1)
nonneg_int = _bounded(int, "a whole number", lo=0)
positive_float = _bounded(float, "a number", lo=0, lo_open=True)
nonneg_float = _bounded(float, "a number", lo=0)
probability = _bounded(float, "a number", lo=0, hi=1)


def split_list(text: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; an empty list is an error (an empty value is a typo)."""
    items = [x.strip() for x in text.split(",")]
    if not text.strip() or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list without empty items")
    return items


def list_of(item):
    """A comma list whose items are each parsed by ``item`` (one of the types above, or ``int``/``float``)."""
    if item is int:
        item = _bounded(int, "a whole number")
    elif item is float:
        item = _bounded(float, "a number")

    def parse(text: str) -> list:
        out = []
        for x in split_list(text):
            try:
                out.append(item(x))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError(f"{text!r}: item {e}") from None
        return out
    return parse


int_list = list_of(int)
float_list = list_of(float)
nonneg_int_list = list_of(nonneg_int)


def number_strings(text: str) -> list[str]:
    """A comma (or space) list of numbers kept as written (``"0.0"`` stays ``"0.0"``: it names files)."""
    items = text.replace(",", " ").split()
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas")
    for x in items:
        _number(x, float, "a number")
    return items


def float_grid(text: str) -> list[float]:
    """``"0.5,1,2"`` or ``"START:STOP:STEP"`` (STOP included) -> finite floats."""
    if ":" not in text:
        return float_list(text)
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:STOP:STEP or numbers separated by commas")
    a, b, c = (_number(x.strip(), float, "a number") for x in parts)
    if c <= 0 or b < a:
        raise argparse.ArgumentTypeError(f"{text!r}: STEP must be positive and STOP at least START")
    return [round(a + k * c, 10) for k in range(int(math.floor((b - a) / c + 1e-9)) + 1)]


def existing_file(text: str) -> str:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return text


# --- machine-readable results: --json FILE, "-" for stdout ---

def add_json_option(p, what: str, *, bare_is_stdout: bool = False):
    """``--json FILE`` (``-``: stdout). ``bare_is_stdout``: a bare ``--json`` also means stdout (older switch)."""
    kw = dict(nargs="?", const="-") if bare_is_stdout else {}
    p.add_argument("--json", metavar="FILE", help=f"write {what} to FILE as JSON ('-': standard output)", **kw)


def write_json_output(path, obj, *, overwrite: bool = True) -> None:
    """Write ``obj`` to the ``--json`` target: standard output for ``-``, else the file, atomically."""
    if str(path) == "-":
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    with atomic_open(path, overwrite=overwrite) as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# --- progress bars ---

def add_quiet_option(p):
    """``--quiet``; ``--progress`` (a switch of older releases: bars now show on a terminal anyway) is accepted."""
    p.add_argument("--quiet", action="store_true", help="no progress bars (they show only when stderr is a "
                                                        "terminal)")
    p.add_argument("--progress", action="store_true", default=True, help=argparse.SUPPRESS)


# --- the parser: hidden aliases, uniform help ---

class HelpFormatter(argparse.HelpFormatter):
    """Defaults shown one way, ``(default: X)``, and only where there is one; required options marked; prose
    wrapped, but lines that start with two spaces (the example commands) kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or getattr(action, "late_required", False)) and action.option_strings:
            text += " (required)"
        default = action.default
        shown = not (default is None or isinstance(default, bool) or default is argparse.SUPPRESS
                     or default == [] or default == "")
        if shown and action.option_strings and not action.required and "(default" not in text:
            if isinstance(default, (list, tuple)):
                text += " (default: " + ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in default) + ")"
            else:
                text += " (default: %(default)s)"
        return text

    def _format_usage(self, usage, actions, groups, prefix):
        # Options checked after parsing (see positional_fallback) are shown as required, unbracketed.
        late = [a for a in actions if getattr(a, "late_required", False)]
        for a in late:
            a.required = True
        try:
            return super()._format_usage(usage, actions, groups, prefix)
        finally:
            for a in late:
                a.required = False

    def _fill_text(self, text, width, indent):
        blocks, prose = [], []
        for line in text.splitlines():
            if line.startswith("  ") or not line.strip():
                if prose:
                    blocks.append(super()._fill_text(" ".join(prose), width, indent))
                    prose = []
                blocks.append(indent + line)
            else:
                prose.append(line)
        if prose:
            blocks.append(super()._fill_text(" ".join(prose), width, indent))
        return "\n".join(blocks)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with hidden aliases: ``p.alias("--old", "--new")`` accepts ``--old`` (and ``--old=V``) as
    ``--new``, shows only ``--new``. Subparsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}
        self.checks = []  # fn(parser, namespace), run after parsing; may call parser.error

    def error(self, message):
        # One line, as the commands' own input errors: the whole usage would bury the message.
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def alias(self, old: str, new: str) -> None:
        if new not in self._option_string_actions:
            raise ValueError(f"alias {old} of unknown option {new}")
        self.aliases[old] = new

    def parse_known_args(self, args=None, namespace=None):
        if self.aliases:
            args = self._unalias(sys.argv[1:] if args is None else list(args))
        namespace, rest = super().parse_known_args(args, namespace)
        for check in self.checks:
            check(self, namespace)
        return namespace, rest

    def _unalias(self, args: list[str]) -> list[str]:
        out = []
        for i, a in enumerate(args):
            if a == "--":
                return out + args[i:]
            name, eq, value = a.partition("=")
            if name in self.aliases:
                a = self.aliases[name] + eq + value
            out.append(a)
        return out


def positional_fallback(p: ArgumentParser, *options: str) -> None:
    """Let bare positional arguments fill ``options`` (required options of ``p``) that were not given, in order:
    an older form of the command, ``quantize MODEL OUT``, keeps working beside ``--lm-dir MODEL --out OUT``."""
    actions = [p._option_string_actions[o] for o in options]
    for a in actions:
        a.late_required = True  # marked "(required)" in the help; checked below
    p.add_argument("_positional", nargs="*", help=argparse.SUPPRESS)

    def check(parser, ns):
        values = list(getattr(ns, "_positional", None) or [])
        delattr(ns, "_positional")
        for a in actions:
            if getattr(ns, a.dest, None) is None and values:
                setattr(ns, a.dest, values.pop(0))
        if values:
            parser.error(f"unrecognized arguments: {' '.join(values)}")
        missing = [a.option_strings[0] for a in actions if getattr(ns, a.dest, None) is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
    p.checks.append(check)


def add_command(sub, name: str, *, help: str, description: str, example, **kwargs) -> ArgumentParser:
    """A subcommand with its one-line help, its description and an ``Example:`` section (one or more lines)."""
    examples = [example] if isinstance(example, str) else list(example)
    epilog = "Example:\n" + "\n".join(f"  {e}" for e in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog, **kwargs)
