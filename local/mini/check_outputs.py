#!/usr/bin/env python3
"""Check that the mini recipe's outputs exist and parse; exit 1 listing every problem.

  check_outputs.py exp               # all stages (data/ is taken as exp/../data)
  check_outputs.py --upto 2 exp      # only what stages 0..2 write
"""

import argparse
import json
import re
import sys
from pathlib import Path

WER_LINE = re.compile(r"^%WER [0-9.]+ \[ \d+ / \d+, \d+ ins, \d+ del, \d+ sub \]")
PNG = b"\x89PNG\r\n\x1a\n"


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, path, msg):
        self.problems.append(f"{path}: {msg}")

    def json(self, path: Path, keys=()):
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            return self.fail(path, "missing")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return self.fail(path, f"not valid JSON ({e})")
        for k in keys:
            if not isinstance(obj, dict) or k not in obj:
                self.fail(path, f"lacks {k!r}")
        return obj

    def exists(self, path: Path):
        if not path.exists():
            self.fail(path, "missing")
            return False
        return True


def check_decode_dir(c: Checker, data: Path, dec: Path, words: Path, *, oracle=True):
    from asr_lm_quant.errors import InputError
    from asr_lm_quant.kaldi.archive import read_decode_dir
    from asr_lm_quant.kaldi.datadir import read_text
    from asr_lm_quant.kaldi.symbols import SymbolTable
    if not (c.exists(dec / "num_jobs") and c.exists(data / "text") and c.exists(words)):
        return
    try:
        nj = int((dec / "num_jobs").read_text())
        for j in range(1, nj + 1):
            c.exists(dec / f"lat.{j}.gz")
        ref = read_text(data / "text")
        sym = SymbolTable.load(words)
        keys = []
        for key, lat in read_decode_dir(dec):
            keys.append(key)
            if lat.num_states == 0 or not lat.compact:
                c.fail(dec, f"lattice {key} is empty or not a CompactLattice")
            sym.words(lat.olabel[lat.olabel > 0], key=key)
        if sorted(keys) != sorted(ref):
            c.fail(dec, f"{len(keys)} lattices for {len(ref)} utterances of {data / 'text'}")
    except (InputError, ValueError, OSError) as e:
        c.fail(dec, f"unreadable: {e}")
    best = dec / "scoring_kaldi" / "best_wer"
    if c.exists(best) and not WER_LINE.match(best.read_text()):
        c.fail(best, "not a %WER line")
    if oracle:
        c.json(dec / "oracle.json", ("nbest_oracle_wer", "lattice_oracle_wer"))


def _kept_files(c, tuned: Path):
    """A tune.py result and the eval 1-best files it names (for the report's significance tests); a
    quantized system's also at its full-precision LM's settings."""
    res = c.json(tuned, ("chosen", "dev_wer", "eval_wer"))
    if not isinstance(res, dict):
        return
    parts = [res]
    if tuned.parent.name.startswith("q_") and tuned.parent.parent.name == "rescore":
        if not isinstance(res.get("at_reference"), dict):
            c.fail(tuned, "no 'at_reference' (the eval half at the full-precision LM's settings)")
        else:
            parts.append(res["at_reference"])
    for part in parts:
        for key in ("eval_hyp", "eval_per_utt"):
            if key in part:
                c.exists(tuned.parent / part[key])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("exp", type=Path)
    p.add_argument("--data", type=Path, help="data dir (default: EXP/../data)")
    p.add_argument("--upto", type=int, default=6, help="last stage whose outputs to check (default 6)")
    a = p.parse_args(argv)
    exp, data = a.exp, a.data or a.exp.parent / "data"
    c = Checker()
    if a.upto >= 0:
        for f in ("train.txt", "valid.txt", "test.txt", "words.txt"):
            c.exists(data / "lm" / f)
    if a.upto >= 1:
        arpa = exp / "ngram" / "3gram.arpa"
        if c.exists(arpa):
            with open(arpa, encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
            if "\\data\\" not in head or "ngram 3=" not in head:
                c.fail(arpa, "not a 3-gram ARPA file")
        for s in ("valid", "test"):
            c.json(exp / "ngram" / f"ppl_{s}.json", ("ppl",))
    if a.upto >= 2:
        words = data / "lang" / "words.txt"
        for f in ("text", "wav.scp", "utt2spk", "spk2utt"):
            c.exists(data / "test" / f)
        check_decode_dir(c, data / "test", exp / "ngram" / "decode_test", words)
        for half in ("dev", "eval"):
            check_decode_dir(c, data / f"test_{half}", exp / "ngram" / f"decode_test_{half}", words)
        _kept_files(c, exp / "ngram" / "first_pass.json")
    if a.upto >= 3:
        # The deeper LM only where it was trained (not with run.sh --larger-lm false); then completely.
        for m in ("lm", "lm_deep") if (exp / "lm_deep").exists() else ("lm",):
            c.exists(exp / m / "config.json")
            for s in ("valid", "test"):
                c.json(exp / m / f"ppl_{s}.json", ("ppl",))
    if a.upto >= 4:
        rows = c.json(exp / "quant" / "results.json")
        if rows is not None and (not isinstance(rows, list) or not rows):
            c.fail(exp / "quant" / "results.json", "expected a non-empty list of systems")
    if a.upto >= 5:
        tuned = list((exp / "rescore").glob("*/*.json")) if (exp / "rescore").exists() else []
        if not tuned:
            c.fail(exp / "rescore", "no rescoring results (*/nbest.json, */lattice.json)")
        for t in tuned:
            _kept_files(c, t)
    if a.upto >= 6:
        res = c.json(exp / "results.json", ("systems", "first_pass"))
        md = exp / "results.md"
        if c.exists(md) and "| system |" not in md.read_text():
            c.fail(md, "has no results table")
        for png in (res or {}).get("plots", []):
            path = exp / png
            if c.exists(path) and path.read_bytes()[:8] != PNG:
                c.fail(path, "not a PNG file")
        if res is not None and not res.get("plots"):
            c.fail(exp / "results.json", "no plots listed")
    if c.problems:
        print("\n".join(c.problems), file=sys.stderr)
        print(f"check_outputs.py: {len(c.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_outputs.py: outputs of stages 0..{a.upto} under {exp} are present and parse")
    return 0


if __name__ == "__main__":
    sys.exit(main())
