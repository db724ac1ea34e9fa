"""``asr-lm-quant ngram-train`` and ``asr-lm-quant ngram-ppl``."""

from __future__ import annotations

import json
import sys

from asr_lm_quant.cli_args import add_command, add_json_option, float_list, nonneg_int_list, write_json_output
from asr_lm_quant.errors import InputError


def register(sub):
    p = add_command(
        sub, "ngram-train", help="train a Kneser-Ney ARPA n-gram LM (kaldingram)",
        description="Count a text (one sentence per line) and write a Kneser-Ney back-off ARPA LM. With "
                    "--words, words outside it are mapped to <unk> first.",
        example="asr-lm-quant ngram-train --text data/lm/train.txt --order 3 --words data/lm/words.txt "
                "--out exp/ngram/3gram.arpa --json exp/ngram/train.json")
    p.add_argument("--text", required=True, help="training text, one sentence per line")
    p.add_argument("--out", required=True, help="output ARPA file")
    p.add_argument("--order", type=int, default=3, help="n-gram order, 2..5")
    p.add_argument("--words", dest="vocab", metavar="WORDS_TXT",
                   help="words.txt (Kaldi's or ours); out-of-vocabulary words become the unknown-word symbol")
    p.alias("--vocab", "--words")
    p.add_argument("--unk", default=None,
                   help="unknown-word symbol with --words (default: oov.txt beside words.txt, as in a Kaldi "
                        "lang dir, else <unk>)")
    p.add_argument("--min-counts", type=nonneg_int_list, help="per-order minimum counts, e.g. 0,0,2")
    p.add_argument("--discounts", type=float_list, help="per-order KN discounts for orders 2..N, e.g. 0.7,0.8")
    add_json_option(p, "the training summary (it is always printed)")
    p.add_argument("--overwrite", action="store_true", help="replace --out (and --json) if they exist")
    p.set_defaults(func=_train)

    p = add_command(
        sub, "ngram-ppl", help="perplexity of an ARPA LM on a text file (kenlm)",
        description="Perplexity with and without end-of-sentence; OOVs are scored as <unk> and counted unless "
                    "--skip-oov (or the LM has no <unk>). Prints JSON.",
        example="asr-lm-quant ngram-ppl --lm exp/ngram/3gram.arpa --text data/lm/test.txt "
                "--json exp/ngram/ppl_test.json")
    p.add_argument("--lm", required=True, help="ARPA file (plain, .gz or kenlm binary)")
    p.add_argument("--text", required=True, help="text, one sentence per line")
    p.add_argument("--skip-oov", action="store_true", help="leave OOV words out of the perplexity (SRILM style)")
    add_json_option(p, "the result (it is always printed)")
    p.set_defaults(func=_ppl)

    p = add_command(
        sub, "old-lm", help="check an old LM for rescoring (ARPA, G.fst, G.carpa, lang dir); costs",
        description="Says which LM file and words.txt --old-lm would use and which cost it removes "
                    "('semantics': min-over-paths or arpa; JSON on stdout). With --text, also the cost of each "
                    "line as rescoring takes it out of the graph costs: 'cost<TAB>sentence', negated natural log "
                    "of <s> words </s>.",
        example="asr-lm-quant old-lm data/lang_test --text data/dev/sentences.txt")
    p.add_argument("lm", help="ARPA file, G.fst, G.carpa or Kaldi lang dir")
    p.add_argument("--words", help="words.txt for a G.fst or G.carpa without one beside it")
    p.add_argument("--use-phi", default="false", metavar="true|false",
                   help="a G.fst only: true scores with the ARPA back-off walk (Kaldi's --use-phi true) instead "
                        "of the cheapest path through G with #0 back-off arcs as epsilons (false: the cost "
                        "decoding put into the lattices). ARPA files and G.carpa always use the ARPA walk")
    p.add_argument("--text", help="sentences to score, one per line")
    p.add_argument("--open", action="store_true",
                   help="read a G.fst or G.carpa whole (checks its structure), not only its head (an ARPA file is "
                        "checked by its header only, unless --text)")
    p.set_defaults(func=_old_lm)


def _train(args):
    from asr_lm_quant.ngram.train import train_arpa
    from asr_lm_quant.atomic import check_writable
    if not 2 <= args.order <= 5:
        raise InputError(None, f"--order {args.order}: must be 2..5")
    for f in (args.out, args.json):
        if f and f != "-":
            check_writable(f, overwrite=args.overwrite)
    vocab, unk = None, "<unk>"
    if args.vocab:
        from asr_lm_quant.kaldi.symbols import NON_WORDS, is_disambiguation_symbol, unknown_word
        from asr_lm_quant.text.swbd_layout import read_symbol_table
        unk = unknown_word(args.vocab, args.unk)
        vocab = {w for w in read_symbol_table(args.vocab) if w not in NON_WORDS and not is_disambiguation_symbol(w)}
    elif args.unk:
        raise InputError(None, "--unk goes with --words")
    summary = train_arpa(args.text, args.out, order=args.order, vocab=vocab, min_counts=args.min_counts,
                         discounts=args.discounts, unk=unk, overwrite=args.overwrite)
    _emit(summary, args.json, overwrite=args.overwrite)


def _ppl(args):
    from asr_lm_quant.ngram.arpa import ArpaLM
    lm = ArpaLM(args.lm)
    result = lm.perplexity_file(args.text, skip_oov=True if args.skip_oov else None)
    result.update(lm=str(args.lm), text=str(args.text), order=lm.order)
    _emit(result, args.json)


def _emit(result, path, overwrite=True):
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    if path and path != "-":  # the result is on stdout already
        write_json_output(path, result, overwrite=overwrite)


def _old_lm(args):
    from asr_lm_quant.ngram.old_lm import SEMANTICS_NOTE, open_old_lm, resolve_old_lm
    from asr_lm_quant.textio import read_lines, split_fields
    from pathlib import Path
    spec = resolve_old_lm(args.lm, args.words, args.use_phi)
    lm = open_old_lm(spec) if args.text or (args.open and spec.kind in ("fst", "carpa")) else None
    print(json.dumps(spec.describe()))
    print(f"old-lm: {spec.kind} {spec.path}: removes the {SEMANTICS_NOTE[spec.semantics]}", file=sys.stderr)
    if args.text:
        from asr_lm_quant.textio import check_readable_once
        path = Path(args.text)
        check_readable_once(path, "text file")
        for _, line in read_lines(path):
            words = split_fields(line)
            print(f"{lm.sentence_cost(words):.6f}\t{' '.join(words)}")
    return 0
