#!/usr/bin/env python3
"""Mini recipe: the language models to rescore with, one ``name model_dir reference`` line each: the
full-precision LMs (exp/lm, exp/lm_deep; reference ``-``) and every quantized system of
exp/quant/results.json that has a model (reference: the full-precision LM it was made from, whose dev-tuned
settings it is also scored at). Full-precision LMs come first."""

import json
import sys
from pathlib import Path


FULL_PRECISION = {"base": "lm", "deep": "lm_deep"}


def systems(exp: Path):
    for name in FULL_PRECISION.values():
        if (exp / name / "config.json").exists():
            yield name, exp / name, "-"
    results = exp / "quant" / "results.json"
    if results.exists():
        for row in json.loads(results.read_text()):
            d = exp / "quant" / row["name"]
            if row.get("method") != "fp" and (d / "config.json").exists():
                yield "q_" + row["name"], d, FULL_PRECISION.get(row.get("model", "base"), "-")


def main():
    exp = Path(sys.argv[1] if len(sys.argv) > 1 else "exp")
    for name, d, reference in systems(exp):
        print(name, d, reference)


if __name__ == "__main__":
    main()
