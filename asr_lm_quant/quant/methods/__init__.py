"""The quantization methods: one module of this package per method, found by scanning the package.

A method module defines ``METHOD = Method(...)``: its name (``quantize --method``), a help line, its relative
cost in a sweep, the configuration entries it adds to ``QuantConfig`` with the command-line flags that fill
them, and its handler, ``handler(ctx) -> (plan, record)``, which quantizes ``ctx.model`` and returns the
:class:`~asr_lm_quant.quant.plan.QuantPlan` to pack and what to record in ``results.json``. Dropping a module
in this package is all it takes: ``quantize``'s choices, options and help, ``check_config``, ``run`` and the
sweep's cost order all read :func:`all_methods`.

Modules here stay free of torch at import time (the command line builds its parser from them); handlers
import what they need.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from asr_lm_quant.errors import InputError
from asr_lm_quant.registry import scan


@dataclass(frozen=True)
class Flag:
    """A command-line option filling one configuration entry of a method: ``target`` is an entry
    (``"hessian_tol"``) or a field of an options dataclass entry (``"admm.rho"``)."""
    flag: str
    target: str
    help: str
    type: Callable | None = None   # None for a boolean field: a switch


@dataclass(frozen=True)
class Method:
    name: str
    help: str
    # relative cost in a sweep, whose workers run the costliest first (a search left for last idled a core
    # for minutes): fine-tuning is 1, mixed methods add choosing the bits (on the mini recipe's systems:
    # Hessian traces +25%, KL passes and the search's super-network +60%), methods that do not train 0.05
    cost: float
    handler: Callable              # handler(ctx: RunContext) -> (QuantPlan, record dict)
    mixed: bool = False            # chooses bits per group under a size budget (--candidates, --budget-*);
    #                                otherwise one precision, --bits
    texts: tuple = ("train_text",)  # the input texts it needs
    config: dict = field(default_factory=dict)  # entries it adds to QuantConfig: name -> default value, or an
    #                                             options dataclass (a nested object in the configuration)
    flags: tuple = ()              # Flag, ...
    check: Callable | None = None  # check(cfg): refuse bad values of its entries (InputError with key=)
    train_plan: Callable | None = None  # train_plan(ctx, plan) -> (plan, record): it can train the plan a
    #                                     mixed method chose (--plan-trainer)


@dataclass
class RunContext:
    """What a handler works on: the configuration, the full-precision model (quantized in place), its
    vocabulary, the training batches (None for methods that do not train), the full-precision teacher of the
    distillation term (or None), the process group and, for mixed methods, the size budget in bits."""
    cfg: Any
    model: Any
    vocab: Any
    train: Any
    teacher: Any
    rt: Any
    budget: float | None = None

    def batches(self, path, tokens_per_batch: int, shuffle: bool, min_rows: int = 1):
        """A batch plan of a text file, cut as the configuration says."""
        return text_batches(path, self.vocab, self.cfg, tokens_per_batch, shuffle, min_rows)

    def uniform_plan(self):
        """Every group at ``cfg.bits``."""
        from asr_lm_quant.quant.plan import QuantPlan
        cfg = self.cfg
        return QuantPlan.uniform(self.model, cfg.bits, cfg.per_row, cfg.bands)


def text_batches(path, vocab, cfg, tokens_per_batch: int, shuffle: bool, min_rows: int = 1):
    """A batch plan of a text file: sentences of at most ``cfg.max_len`` tokens, shuffled by ``cfg.seed``."""
    from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
    return BatchPlan(sequences(encode_file(path, vocab), vocab.bos, cfg.max_len), tokens_per_batch,
                     seed=cfg.seed, shuffle=shuffle, min_rows=min_rows)


_found: dict[str, Method] | None = None


def all_methods() -> dict[str, Method]:
    """name -> Method of every module of this package, cheapest first (uniform before mixed)."""
    global _found
    if _found is None:
        found = scan(__name__, __path__, "METHOD", Method)
        _found = dict(sorted(found.items(), key=lambda kv: (kv[1].mixed, kv[1].cost, kv[0])))
    return _found


def forget() -> None:
    """Scan the package again on the next call (after a module was added to it)."""
    global _found
    _found = None


def get_method(name: str) -> Method:
    methods = all_methods()
    if name not in methods:
        raise InputError(None, f"unknown method {name!r} (one of {', '.join(methods)})", key="method")
    return methods[name]


def mixed_methods() -> tuple[str, ...]:
    return tuple(n for n, m in all_methods().items() if m.mixed)


def plan_trainers() -> tuple[str, ...]:
    """The methods that can train a mixed method's chosen plan."""
    return tuple(n for n, m in all_methods().items() if m.train_plan is not None)


# --- configuration entries -----------------------------------------------------------------------------------
def config_defaults() -> dict:
    """Every method's configuration entries at their defaults (options dataclasses as fresh instances)."""
    out = {}
    for m in all_methods().values():
        for key, default in m.config.items():
            if key in out:
                raise TypeError(f"method {m.name}: configuration entry {key!r} is another method's too")
            out[key] = default() if dataclasses.is_dataclass(default) else default
    return out


def config_types() -> dict:
    """Entry name -> options dataclass, for the entries that are one."""
    return {k: v for m in all_methods().values() for k, v in m.config.items() if dataclasses.is_dataclass(v)}


def _default(target: str):
    key, _, attr = target.partition(".")
    value = config_defaults()[key]
    return getattr(value, attr) if attr else value


def add_method_flags(parser) -> None:
    """One group of options per method that has flags, defaults taken from its configuration."""
    for m in all_methods().values():
        if not m.flags:
            continue
        group = parser.add_argument_group(f"{m.name} options")
        for f in m.flags:
            default = _default(f.target)
            if f.type is None:
                group.add_argument(f.flag, dest=f.target, default=default, help=f.help,
                                   action="store_true" if default is False else argparse.BooleanOptionalAction)
            else:
                group.add_argument(f.flag, dest=f.target, type=f.type, default=default, help=f.help,
                                   metavar=f.flag.lstrip("-").upper().replace("-", "_"))


def config_from_args(args) -> dict:
    """The methods' configuration entries, filled from the parsed flags (unflagged fields keep defaults)."""
    entries = config_defaults()
    for m in all_methods().values():
        for f in m.flags:
            key, _, attr = f.target.partition(".")
            if attr:
                entries[key] = dataclasses.replace(entries[key], **{attr: getattr(args, f.target)})
            else:
                entries[key] = getattr(args, f.target)
    return entries


def methods_help() -> str:
    return "; ".join(f"{n}: {m.help}" for n, m in all_methods().items())
