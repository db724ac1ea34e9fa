"""Text preparation throughput: WikiText-2 through ``prepare_plain`` (no normalisation vs ASR-style), and the
Kaldi Switchboard/Fisher word mapping on synthetic lines in the Fisher/ms98 styles. Prints JSON (medians
of --repeats runs)."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from asr_lm_quant.text.fisher import map_fisher_line, map_hesitations
from asr_lm_quant.text.plain import prepare_plain
from asr_lm_quant.text.swbd_words import map_swbd_word

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikitext-2"


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--wikitext", type=Path, default=SHARED)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lines", type=int, default=100_000, help="synthetic Fisher lines")
    args = ap.parse_args()
    out = {}
    if args.wikitext.exists():
        w = args.wikitext
        for norm in ("none", "asr"):
            with tempfile.TemporaryDirectory() as tmp:
                sec, stats = timed(lambda: prepare_plain(w / "train.txt.xz", w / "valid.txt.xz", w / "test.txt.xz",
                                                         Path(tmp) / "lm", normalize=norm, overwrite=True),
                                   args.repeats)
            words = sum(stats[s]["words"] for s in ("train", "valid", "test"))
            out[f"wikitext2_plain_{norm}"] = {"seconds": round(sec, 3), "words_per_s": round(words / sec),
                                              "vocab_size": stats["vocab_size"],
                                              "valid_oov_rate": stats["valid"]["oov_rate"]}
        out["asr_vs_none_time_ratio"] = round(out["wikitext2_plain_asr"]["seconds"]
                                              / out["wikitext2_plain_none"]["seconds"], 2)
    rng = random.Random(0)
    vocab = ("yeah i'm (( not )) sure 'cause um uh [laugh] [noise] it's okay what- mhm hmm well,i think the a to "
             "and of you know [laugh-yes] ab[solute]- {uh} them_1").split()
    lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 20))) for _ in range(args.lines)]
    sec, _ = timed(lambda: [map_hesitations(m) for line in lines if (m := map_fisher_line(line)) is not None],
                   args.repeats)
    out["fisher_map"] = {"lines": len(lines), "lines_per_s": round(len(lines) / sec)}
    words = [w for line in lines for w in line.split()]
    sec, _ = timed(lambda: [map_swbd_word(w) for w in words], args.repeats)
    out["swbd_word_map"] = {"words": len(words), "words_per_s": round(len(words) / sec)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
