#!/usr/bin/env python3
"""Mini recipe: the systems of a quant-sweep systems file made from the given models, comma-separated (what
``quant-sweep --only`` takes).

  quant_systems.py conf/quant.json base          # the systems of the base LM only
  quant_systems.py conf/quant.json base,deep
"""

import sys

from asr_lm_quant.errors import InputError
from asr_lm_quant.quant.systems_file import load_systems


def select(conf: dict, models: set[str]) -> list[str]:
    """Names of the systems whose model (``base`` when a system names none) is one of ``models``."""
    return [s["name"] for s in conf["systems"] if s.get("model", "base") in models]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path, models = argv[0], set(argv[1].split(","))
    try:
        names = select(load_systems(path), models)
    except InputError as e:
        print(f"quant_systems.py: {e}", file=sys.stderr)
        return 1
    if not names:
        print(f"quant_systems.py: {path} has no system of model(s) {argv[1]}", file=sys.stderr)
        return 1
    print(",".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
