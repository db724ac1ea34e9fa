#!/usr/bin/env python3
"""Compare two results.json files of the mini recipe number for number, ignoring what a rerun may change
without a change of behaviour: dates, the machine, wall times and rates.

    local/mini/compare_results.py OLD.json NEW.json     # exit 0: identical; 1: lists every difference
"""

import json
import sys

IGNORED_WORDS = ("date", "machine", "seconds", "time", "tokens_per_s", "wall")


def ignored(key: str) -> bool:
    return any(w in key.lower() for w in IGNORED_WORDS)


def differences(a, b, where="$"):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if ignored(k):
                continue
            if k not in a or k not in b:
                yield f"{where}.{k}: only in {'new' if k not in a else 'old'}"
            else:
                yield from differences(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{where}: {len(a)} items, now {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, f"{where}[{i}]")
    elif a != b:
        yield f"{where}: {a!r} -> {b!r}"


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        old, new = (json.load(open(p, encoding="utf-8")) for p in argv[1:])
    except (OSError, ValueError) as e:
        print(f"{sys.argv[0]}: cannot read {getattr(e, 'filename', None) or 'a results file'}: {e}", file=sys.stderr)
        return 2
    diff = list(differences(old, new))
    for line in diff:
        print(line)
    print(f"{len(diff)} differences" if diff else "identical (dates, machine and timings ignored)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
