#!/usr/bin/env python3
"""Switchboard recipe, stage 2: the quantization systems of a systems file, one model directory each.

    local/quant_systems.py list CONF [--only a,b]          names of the systems to build, one a line
    local/quant_systems.py run CONF NAME --model base=exp/lm --out exp/lm_NAME \\
        --train data/lm/train.txt --valid data/lm/valid.txt --test data/lm/test.txt [--threads N]

CONF is in the format of ``asr-lm-quant quant-sweep`` (asr_lm_quant/quant/sweep.py): ``defaults`` and a
``systems`` list of QuantConfig fields with a ``name``; ``model`` picks a ``--model`` (default ``base``) and
``budget_size_of: NAME`` sets the size budget to the 32-bit size of that model. Systems with method ``fp`` are
left out (the full-precision LM is exp/lm itself). Unlike quant-sweep, each system is its own job (its own
log, its own queue slot) and goes into a directory the recipe names, so stages can be re-entered per system.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.systems_file import load_systems


def selected(conf: dict, path, only: str | None) -> list[dict]:
    systems = [s for s in conf["systems"] if s["method"] != "fp"]
    if only:
        names = [n for n in only.split(",") if n]
        known = {s["name"] for s in systems}
        for n in names:
            if n not in known:
                raise InputError(path, f"no quantization system {n!r} (have: {', '.join(sorted(known))})",
                                 key="systems")
        systems = [s for s in systems if s["name"] in names]
    return systems


def config_for(conf: dict, path, name: str, models: dict, texts: dict, out: str):
    from asr_lm_quant.quant.pipeline import QuantConfig
    system = next((dict(s) for s in conf["systems"] if s["name"] == name), None)
    if system is None:
        raise InputError(path, f"no quantization system {name!r}", key="systems")
    system.pop("name")
    if system["method"] == "fp":
        raise InputError(path, "method 'fp' is the unquantized LM: nothing to build", key=name)
    model = system.pop("model", "base")
    if model not in models:
        raise InputError(path, f"system {name!r} needs model {model!r}: give --model {model}=DIR", key=name)
    size_of = system.pop("budget_size_of", None)
    if size_of is not None:
        if size_of not in models:
            raise InputError(path, f"budget_size_of {size_of!r}: give --model {size_of}=DIR", key=name)
        from asr_lm_quant.quant.packed import load_any_lm
        from asr_lm_quant.quant.plan import QuantPlan
        m, _ = load_any_lm(models[size_of])
        system["budget_mb"] = QuantPlan.uniform(m, 32).size_report(m)["fp32_bytes"] / 1e6
    fields = {**conf.get("defaults", {}), **{f"{k}_text": v for k, v in texts.items() if v}, **system,
              "model": models[model], "out": out}
    return QuantConfig.from_dict(fields, source=path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="names of the systems to build")
    ls.add_argument("conf")
    ls.add_argument("--only", help="comma-separated names (default: all)")
    r = sub.add_parser("run", help="build one system")
    r.add_argument("conf")
    r.add_argument("name")
    r.add_argument("--model", action="append", default=[], metavar="NAME=DIR")
    r.add_argument("--out", required=True)
    r.add_argument("--train")
    r.add_argument("--valid")
    r.add_argument("--test")
    r.add_argument("--threads", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        conf = load_systems(args.conf)
        if args.cmd == "list":
            for s in selected(conf, args.conf, args.only):
                print(s["name"])
            return 0
        models = {}
        for m in args.model:
            if "=" not in m:
                raise InputError(None, f"--model takes NAME=DIR, not {m!r}", key="--model")
            k, v = m.split("=", 1)
            models[k] = v
        cfg = config_for(conf, args.conf, args.name, models,
                         {"train": args.train, "valid": args.valid, "test": args.test}, args.out)
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        from asr_lm_quant.quant.pipeline import run
        res = run(cfg)
        print(f"{args.name}: {res['size_mb']:.3f} MB ({res['compression']:.1f}x, {res['avg_bits']:.2f} bits), "
              f"valid ppl {res.get('valid_ppl')}, test ppl {res.get('test_ppl')}")
    except (InputError, FileExistsError) as e:
        print(f"{sys.argv[0]}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
