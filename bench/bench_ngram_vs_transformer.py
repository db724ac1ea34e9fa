"""WikiText-2: Kneser-Ney 3-gram (kaldingram) vs a small Transformer LM (recipes/mini settings).

Both models share one vocabulary (the 10k most frequent training words + <s>, <unk>) and are scored on
the same validation tokens: every word (OOVs as <unk>) and one end-of-sentence per sentence. Every stage
is skipped when its output exists, and Transformer training resumes from its checkpoints, so re-running
the same command continues an interrupted measurement.

    .venv/bin/python bench/bench_ngram_vs_transformer.py --work exp/bench_wt2 [--threads 2]

Small corpora: ``--train-words 1000000`` trains both on the first sentences of WikiText-2 train up to a
million words, with the vocabulary chosen from those sentences (valid and test as before);
``--set model.dropout=0.2`` (repeatable) changes the configuration.

Prints (and writes to <work>/result.json) both perplexities (valid and test) and the relative reduction.
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
    ap.add_argument("--train-words", type=int, help="train on the first sentences up to this many words")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="change the configuration, e.g. model.dropout=0.2 or train.weight_decay=0.1")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from asr_lm_quant.lm.files import load_lm
    from asr_lm_quant.lm.ppl import perplexity
    from asr_lm_quant.lm.train import train
    from asr_lm_quant.ngram import ArpaLM, train_arpa
    from asr_lm_quant.text.plain import prepare_plain
    from asr_lm_quant.text.vocab import Vocabulary

    work = Path(args.work)
    config = Path(args.config)
    if args.set:
        cfg = json.loads(config.read_text())
        for item in args.set:
            key, _, value = item.partition("=")
            section, _, name = key.partition(".")
            if section not in ("model", "train") or not name or not value:
                raise SystemExit(f"--set {item!r}: expected model.KEY=VALUE or train.KEY=VALUE")
            try:
                cfg[section][name] = json.loads(value)
            except json.JSONDecodeError:
                raise SystemExit(f"--set {item!r}: the value must be JSON (a number, true/false, \"text\")")
        config = work / "config.json"
        work.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(cfg, indent=1))
    text = work / "text"
    wt = Path(args.wikitext)
    timings = {}
    if not (text / "words.txt").exists():
        t = time.perf_counter()
        prepare_plain(wt / "train.txt.xz", wt / "valid.txt.xz", wt / "test.txt.xz", text,
                      max_size=args.max_vocab, normalize="asr")
        timings["prepare_text_s"] = time.perf_counter() - t
    if args.train_words:  # a prefix of the corpus, with its own vocabulary
        small = work / f"text_{args.train_words}"
        if not (small / "words.txt").exists():
            small.mkdir(parents=True, exist_ok=True)
            n = 0
            with open(text / "train.txt", encoding="utf-8") as f, \
                    open(small / "train_source.txt", "w", encoding="utf-8") as out:
                for line in f:
                    if n >= args.train_words:
                        break
                    out.write(line)
                    n += len(line.split())
            prepare_plain(small / "train_source.txt", text / "valid.txt", text / "test.txt", small,
                          max_size=args.max_vocab)
        text = small
    vocab = Vocabulary.load(text / "words.txt")
    arpa = text / f"kn{args.order}.arpa"  # beside the text it was trained on
    if not arpa.exists():
        t = time.perf_counter()
        train_arpa(text / "train.txt", arpa, order=args.order, vocab=vocab)
        timings["ngram_train_s"] = time.perf_counter() - t
    ngram = ArpaLM(arpa).perplexity_file(text / "valid.txt")
    ngram_test = ArpaLM(arpa).perplexity_file(text / "test.txt")

    t = time.perf_counter()
    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
    res = train(config, text / "train.txt", text / "valid.txt", text / "words.txt", work / "transformer",
                overrides=overrides, max_steps_this_run=args.max_steps_this_run)
    timings["transformer_train_s_this_run"] = time.perf_counter() - t
    out = {"data": "WikiText-2 valid and test (ASR-normalised)", "vocab_size": len(vocab),
           "ngram_order": args.order, "train_words": sum(len(x.split()) for x in open(text / "train.txt")),
           "ngram": ngram, "ngram_test": ngram_test, "config": str(args.config), "set": args.set,
           "timings": timings}
    if res.get("done"):
        model, _ = load_lm(work / "transformer")
        nn = perplexity(model, vocab, text / "valid.txt", progress=False)
        if nn["tokens_scored"] != ngram["tokens_scored"]:
            raise SystemExit(f"token counts differ: transformer {nn['tokens_scored']} vs n-gram "
                             f"{ngram['tokens_scored']}")
        nn_test = perplexity(model, vocab, text / "test.txt", progress=False)
        out.update(transformer=nn, transformer_test=nn_test, transformer_training=res,
                   ppl_reduction=1 - nn["ppl"] / ngram["ppl"],
                   test_ppl_reduction=1 - nn_test["ppl"] / ngram_test["ppl"],
                   target_met=nn_test["ppl"] <= 0.8 * ngram_test["ppl"])
    else:
        out.update(transformer=None, transformer_training=res,
                   note="training interrupted; re-run the same command to continue")
    (work / "result.json").write_text(json.dumps(out, indent=2))
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
