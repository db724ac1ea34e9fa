"""WikiText-2: Kneser-Ney 3-gram (kaldingram) vs a small Transformer LM (recipes/mini settings).

Both models share one vocabulary (the 10k most frequent training words + <s>, <unk>) and are scored on
the same validation tokens: every word (OOVs as <unk>) and one end-of-sentence per sentence. Every stage
is skipped when its output exists, and Transformer training resumes from its checkpoints, so re-running
the same command continues an interrupted measurement.

    .venv/bin/python bench/bench_ngram_vs_transformer.py --work exp/bench_wt2 [--threads 2]

Prints (and writes to <work>/result.json) both perplexities and the relative reduction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="exp/bench_wt2", help="working directory (text, ARPA, model)")
    ap.add_argument("--wikitext", default=str(REPO.parent / "shared/data/wikitext-2"))
    ap.add_argument("--config", default=str(REPO / "recipes/mini/conf/lm.json"))
    ap.add_argument("--max-vocab", type=int, default=10000)
    ap.add_argument("--order", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-epochs", type=int, help="override the configuration's epochs")
    ap.add_argument("--max-steps-this-run", type=int, default=0, help="stop training early (resume later)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from asr_lm_quant.lm.files import load_lm
    from asr_lm_quant.lm.ppl import perplexity
    from asr_lm_quant.lm.train import train
    from asr_lm_quant.ngram import ArpaLM, train_arpa
    from asr_lm_quant.text.plain import prepare_plain
    from asr_lm_quant.text.vocab import Vocabulary

    work = Path(args.work)
    text = work / "text"
    wt = Path(args.wikitext)
    timings = {}
    if not (text / "words.txt").exists():
        t = time.perf_counter()
        prepare_plain(wt / "train.txt.xz", wt / "valid.txt.xz", wt / "test.txt.xz", text,
                      max_size=args.max_vocab, normalize="asr")
        timings["prepare_text_s"] = time.perf_counter() - t
    vocab = Vocabulary.load(text / "words.txt")
    arpa = work / f"kn{args.order}.arpa"
    if not arpa.exists():
        t = time.perf_counter()
        train_arpa(text / "train.txt", arpa, order=args.order, vocab=vocab)
        timings["ngram_train_s"] = time.perf_counter() - t
    ngram = ArpaLM(arpa).perplexity_file(text / "valid.txt")

    t = time.perf_counter()
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
    res = train(args.config, text / "train.txt", text / "valid.txt", text / "words.txt", work / "transformer",
                overrides=overrides, max_steps_this_run=args.max_steps_this_run)
    timings["transformer_train_s_this_run"] = time.perf_counter() - t
    out = {"data": "WikiText-2 valid (ASR-normalised)", "vocab_size": len(vocab), "ngram_order": args.order,
           "ngram": ngram, "config": str(args.config), "timings": timings}
    if res.get("done"):
        model, _ = load_lm(work / "transformer")
        nn = perplexity(model, vocab, text / "valid.txt", progress=False)
        if nn["tokens_scored"] != ngram["tokens_scored"]:
            raise SystemExit(f"token counts differ: transformer {nn['tokens_scored']} vs n-gram "
                             f"{ngram['tokens_scored']}")
        out.update(transformer=nn, transformer_training=res,
                   ppl_reduction=1 - nn["ppl"] / ngram["ppl"],
                   target_met=nn["ppl"] <= 0.8 * ngram["ppl"])
    else:
        out.update(transformer=None, transformer_training=res,
                   note="training interrupted; re-run the same command to continue")
    (work / "result.json").write_text(json.dumps(out, indent=2))
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
