#!/usr/bin/env python3
"""Mini recipe: the language models to rescore with, one ``name model_dir`` line each: the full-precision
LMs (exp/lm, exp/lm_deep) and every quantized system of exp/quant/results.json that has a model."""

import json
import sys
from pathlib import Path


def systems(exp: Path):
    for name in ("lm", "lm_deep"):
        if (exp / name / "config.json").exists():
            yield name, exp / name
    results = exp / "quant" / "results.json"
    if results.exists():
        for row in json.loads(results.read_text()):
            d = exp / "quant" / row["name"]
            if row.get("method") != "fp" and (d / "config.json").exists():
                yield "q_" + row["name"], d


def main():
    exp = Path(sys.argv[1] if len(sys.argv) > 1 else "exp")
    for name, d in systems(exp):
        print(name, d)


if __name__ == "__main__":
    main()
