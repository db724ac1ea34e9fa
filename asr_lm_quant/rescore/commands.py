"""``asr-lm-quant rescore-nbest`` and ``asr-lm-quant rescore-lattice``."""

from __future__ import annotations

import json
import logging

from asr_lm_quant.cli_args import (add_command, add_json_option, add_quiet_option, float_grid, float_list,
                                   positive_float, positive_int, probability, write_json_output)
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.commands import add_self_norm_options, self_normalized
from asr_lm_quant.rescore.decide import format_weight

log = logging.getLogger(__name__)


def _add_lm_options(p):
    p.add_argument("--old-lm", help="the LM the decoder used, removed from the graph costs: an ARPA file (plain, "
                                    ".gz or kenlm binary), a G.fst, a G.carpa, or a Kaldi lang dir (its G.carpa "
                                    "if present, else its G.fst, with its words.txt); a G.fst or G.carpa given "
                                    "alone reads the words.txt beside it, else --words. Without it (a recogniser "
                                    "with no LM of its own) the NN LM is added: lm_cost + w * nn")
    p.add_argument("--use-phi", default="false", metavar="true|false",
                   help="a G.fst old LM only: true removes the ARPA back-off walk's cost (failure arcs, Kaldi's "
                        "--use-phi true) instead of the cheapest path through G with #0 back-off arcs as "
                        "epsilons, the cost lattices from decoding hold (false, as Kaldi's pytorchnn scripts). ARPA "
                        "files and G.carpa always use the ARPA walk")
    lm = p.add_mutually_exclusive_group(required=True)
    lm.add_argument("--lm-dir", metavar="LM_DIR",
                    help="NN LM directory (Transformer or LSTM, plain or quantized); this or --hf-lm is required")
    lm.add_argument("--hf-lm", metavar="DIR",
                    help="a local Hugging Face causal LM checkpoint directory (GPT-2 style, safetensors weights "
                         "and its tokenizer) in place of --lm-dir: subword costs added per word")
    p.add_argument("--words", help="words.txt of the lattices and Kaldi n-best tables (data/lang/words.txt)")
    p.add_argument("--weight", type=float_list, default=[0.8], metavar="W[,W...]",
                   help="NN LM interpolation weight w, or several separated by commas")
    p.alias("--weights", "--weight")
    p.add_argument("--acwt", type=float, default=None,
                   help="acoustic scale for lattice N-best extraction and pruning (default: 0.1, for chain and "
                        "nnet3 decodes; GMM decodes use their own, e.g. 0.0833); lattice inputs only")
    p.alias("--acoustic-scale", "--acwt")
    p.add_argument("--device", default="cpu", help="torch device for the NN LM: cpu, cuda or cuda:N")
    p.add_argument("--bf16", action="store_true", help="run the NN LM under bfloat16 autocast")
    p.add_argument("--dequantize", action="store_true",
                   help="load a packed (quantized) model as float weights instead of scoring from its codes")
    p.add_argument("--tokens-per-batch", dest="token_budget", type=int, default=4096,
                   help="model positions per NN batch, padding included")
    p.alias("--token-budget", "--tokens-per-batch")
    p.add_argument("--max-row", type=int, default=256, help="trie nodes per packed row")
    p.add_argument("--no-share-prefixes", action="store_true", help="score every hypothesis separately")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of this job (1: jobs run in parallel, one per lat.JOB.gz)")
    add_quiet_option(p)
    add_self_norm_options(p)
    add_json_option(p, "the summary (it is always logged)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")


def _add_nbest_format(p):
    from asr_lm_quant.nbest.formats import all_formats, format_help
    p.add_argument("--nbest-format", choices=("auto", *all_formats()), default="auto", help=format_help())


def register(sub):
    p = add_command(sub, "rescore-nbest", help="N-best rescoring with an NN LM interpolated with the old n-gram",
                    example="asr-lm-quant rescore-nbest --old-lm data/lang/G.carpa --lm-dir exp/lm "
                            "--words data/lang/words.txt --lattices 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|' "
                            "--nbest-size 20 --weight 0.5,0.8 --out-nbest exp/rescore/dev.{weight}.tsv",
                    description="new_graph = graph - ngram + w * nn + (1 - w) * ngram for each hypothesis. "
                                "Input: lattices (turned into N-best as lattice-to-nbest does), an "
                                "n-best file or dir (ours, generic JSON, ESPnet, Whisper/HF, NeMo: "
                                "--nbest-format), or a dir of Kaldi n-best tables (words, acwt, "
                                "lmwt.withlm). With several weights, output paths must contain {weight}.")
    _add_lm_options(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--lattices", help="lattice rspecifier, e.g. 'ark:gunzip -c decode/lat.1.gz|'; this, "
                     "--nbest or --nbest-tables is required")
    src.add_argument("--nbest", help="n-best file (.tsv, .jsonl, .json) or ESPnet decode dir")
    src.add_argument("--nbest-tables", help="dir with Kaldi n-best tables words, acwt, lmwt.withlm")
    _add_nbest_format(p)
    p.add_argument("--nbest-size", dest="n", type=int, default=20, metavar="N",
                   help="N-best size when reading lattices")
    p.alias("--n", "--nbest-size")
    p.add_argument("--oov-penalty", type=float, default=0.0,
                   help="nats added to the NN LM cost per word outside its vocabulary")
    p.add_argument("--out-lattices", help="wspecifier for rescored lattices (one per utterance)")
    p.add_argument("--out-nbest", help="rescored n-best list (.tsv or .jsonl)")
    p.add_argument("--out-tables", help="dir for Kaldi n-best tables (words, acwt, lmwt.*)")
    p.add_argument("--prune-lmwt", metavar="MIN:MAX",
                   help="score with the NN LM only the hypotheses that can be the 1-best at some LM weight "
                        "MIN..MAX (integers, as score.sh sweeps them), --prune-wips and --weight; the others "
                        "are left out of the outputs (1-best at those settings unchanged)")
    p.add_argument("--prune-wips", default="0.0,0.5,1.0",
                   help="word insertion penalties of that sweep")
    p.add_argument("--prune-beam", type=float,
                   help="with --prune-lmwt: also drop hypotheses more than this many nats behind the "
                        "first-pass best at every setting (faster; may change the 1-best)")
    p.set_defaults(func=_nbest)

    p = add_command(sub, "rescore-lattice", help="lattice rescoring (path cover, or pruned composition)",
                    example=["asr-lm-quant rescore-lattice --old-lm data/lang/G.carpa --lm-dir exp/lm "
                             "--words data/lang/words.txt --lattices 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|' "
                             "--weight 0.8 --out-lattices 'ark:|gzip -c > exp/rescore/decode_dev/lat.1.gz'",
                             "asr-lm-quant rescore-lattice --method pruned --ngram-order 4 --beam 5 "
                             "--old-lm data/lang/G.carpa --lm-dir exp/lm --words data/lang/words.txt "
                             "--lattices 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|' "
                             "--out-lattices 'ark:|gzip -c > exp/rescore/decode_dev/lat.1.gz'"],
                    description="Path cover (default): prune, expand likely arcs to unique histories, score a set "
                                "of paths covering every arc with the NN LM and give each arc the estimate of the "
                                "best path through it: graph += w * nn - w * ngram. --method pruned composes the "
                                "lattice with the NN LM instead (Kaldi's pruned RNNLM rescoring): histories that "
                                "share their last --ngram-order - 1 words are merged, arcs are expanded best first "
                                "by the lattice's own forward-backward costs, and none estimated beyond --beam of "
                                "the best complete path is scored.")
    _add_lm_options(p)
    p.add_argument("--lattices", required=True, help="lattice rspecifier")
    p.add_argument("--beam", type=positive_float, default=5.0, help="pruning beam")
    p.add_argument("--epsilon", type=probability, default=0.5,
                   help="arcs with a posterior above this get a unique history")
    p.add_argument("--out-lattices", required=True, help="wspecifier for the rescored lattices")
    p.add_argument("--check", action="store_true",
                   help="self-check: at weight 0 the output must keep the first pass's best path at every "
                        "LMWT 7..17 (unless pruning removed it); stop with an error naming the utterance if not")
    p.add_argument("--method", choices=("path-cover", "pruned"), default="path-cover",
                   help="path-cover: the estimate above; pruned: compose the lattice with the NN LM under an "
                        "n-gram history, best first within --beam (Kaldi's RNNLM pruned rescoring)")
    p.add_argument("--ngram-order", type=positive_int, default=4,
                   help="--method pruned: histories sharing their last ORDER-1 words are merged")
    p.add_argument("--max-states", type=int, default=10000,
                   help="--method pruned: most composed states expanded per lattice")
    p.set_defaults(func=_lattice)
    _register_decide(sub)


def _register_decide(sub):
    from asr_lm_quant.rescore.decide import DEFAULT_LM_SCALES, DEFAULT_PENALTIES
    p = add_command(
        sub, "decide-nbest",
        example="asr-lm-quant decide-nbest --weight 0.5,0.8 --dev exp/rescore/dev.{weight}.tsv --dev-ref "
                "data/dev/text --test exp/rescore/test.{weight}.tsv --test-ref data/test/text --out exp/decide",
        help="pick the 1-best of n-best lists (any recogniser) with scales tuned on a dev set; WER",
        description="cost = acoustic + lm_scale * lm + penalty * words for every hypothesis of the n-best "
                    "files (ours, e.g. written by rescore-nbest, one per interpolation weight with {weight} "
                    "in the path; or generic JSON, ESPnet, Whisper/HF, NeMo: --nbest-format). The setting "
                    "(weight, lm_scale, penalty) with the fewest word errors on "
                    "--dev is applied to --test. Writes OUT/dev/text and OUT/test/text (Kaldi text: the "
                    "1-best), OUT/decision.json, OUT/sweep.md and OUT/sweep.png.")
    p.add_argument("--dev", required=True, help="dev n-best file or ESPnet decode dir; may contain {weight}")
    p.add_argument("--dev-ref", help="dev references, Kaldi text ('utt-id word ...') (default: the references "
                                     "inside the n-best file: generic JSON, whisper-hf, NeMo, and "
                                     "rescore-nbest's JSON lines made from them)")
    p.add_argument("--test", help="test n-best file, decided with the dev set's best setting")
    p.add_argument("--test-ref", help="test references (Kaldi text), for its WER")
    p.add_argument("--weight", dest="weights", type=float_list, metavar="W[,W...]",
                   help="the values of {weight} in the paths, e.g. 0.5,0.8")
    p.alias("--weights", "--weight")
    p.add_argument("--lm-scales", type=float_grid, default=list(DEFAULT_LM_SCALES),
                   help="LM scales: a comma list or START:STOP:STEP")
    p.add_argument("--penalties", type=float_grid, default=list(DEFAULT_PENALTIES),
                   help="word insertion penalties per word, negative = bonus: a comma list or START:STOP:STEP")
    _add_nbest_format(p)
    p.add_argument("--per-token-costs", choices=("none", "acoustic", "lm", "both"), default="none",
                   help="costs given as averages per token (words + end of sentence), as end-to-end "
                        "recognisers often report them: multiplied back by the hypothesis length")
    p.add_argument("--normalize", choices=("none", "lower", "asr"), default="none",
                   help="text normalisation of hypotheses and references alike before counting errors: lower "
                        "case; asr = lower case and punctuation removed (numbers are not read out)")
    p.add_argument("--subsets", help="WER per subset too: NAME=PREFIX,... of utterance ids (e.g. "
                                     "swbd=sw_,callhm=en_)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    add_quiet_option(p)
    p.set_defaults(func=_decide)


def _decide(args):
    from asr_lm_quant.rescore.decide_nbest import decide_nbest

    lm_scales, penalties = args.lm_scales, args.penalties
    weights = args.weights or [None]
    subsets = []
    for item in (args.subsets or "").split(","):
        if item.strip():
            if "=" not in item:
                raise InputError(None, f"--subsets: expected NAME=PREFIX, got {item!r}")
            subsets.append(tuple(item.split("=", 1)))
    summary = decide_nbest(args.dev, args.out, test=args.test, dev_ref=args.dev_ref, test_ref=args.test_ref,
                           weights=weights, lm_scales=lm_scales, penalties=penalties, fmt=args.nbest_format,
                           per_token_costs=args.per_token_costs, normalize=args.normalize, subsets=subsets,
                           overwrite=args.overwrite)
    print(json.dumps(summary))


def _outputs(weights, **paths):
    """Per output, weight -> path; with several weights a path must contain {weight}."""
    out = {}
    for name, path in paths.items():
        if not path:
            continue
        if len(weights) > 1 and "{weight}" not in path:
            raise InputError(path, f"--{name.replace('_', '-')}: with several weights the path must contain "
                                   "{weight}")
        out[name] = {w: path.replace("{weight}", format_weight(w)) for w in weights}
    return out


def _check_outputs(args, outs: dict) -> None:
    """Every output file of every weight can be written: before the model is loaded or anything scored."""
    from asr_lm_quant.atomic import check_writable
    from asr_lm_quant.kaldi.specifiers import output_files
    from asr_lm_quant.rescore.nbest import TABLES
    files = []
    for name, by_w in outs.items():
        for w, target in by_w.items():
            if name == "out_lattices":
                files += output_files(target)
            elif name == "out_tables":
                files += [f"{target}/{t}" for t in TABLES + (f"lmwt.interp.{w:g}",)]
            else:
                files.append(target)
    if args.json and args.json != "-":
        files.append(args.json)
    dup = {f for f in files if files.count(f) > 1}
    if dup:
        raise InputError(sorted(dup)[0], "named as more than one output")
    for f in files:
        check_writable(f, overwrite=args.overwrite)


def _setup(args):
    import torch

    from asr_lm_quant.kaldi.symbols import SymbolTable
    from asr_lm_quant.lm.device import checked_device
    from asr_lm_quant.ngram.old_lm import open_old_lm, parse_use_phi, resolve_old_lm
    from asr_lm_quant.rescore.nnscore import make_scorer
    from asr_lm_quant.quant.packed import load_any_lm, load_lm_for_inference
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    weights = args.weight
    if not weights:
        raise InputError(None, "--weight: no weight given")
    for w in weights:
        if not 0.0 <= w <= 1.0:
            raise InputError(None, f"--weight {w}: must be in [0, 1]")
    if args.token_budget < 1 or args.max_row < 2 or args.threads < 0:
        raise InputError(None, "--token-budget must be at least 1, --max-row at least 2, --threads at least 0")
    checked_device(args.device)
    if args.hf_lm and (args.dequantize or getattr(args, "oov_penalty", 0.0) or args.self_normalized
                        or args.force_self_normalized):
        raise InputError(args.hf_lm, "--dequantize, --oov-penalty and --self-normalized apply to --lm-dir models "
                                     "only (a subword model has no word vocabulary)")
    # Before the model: a wrong or corrupt old LM is found at once.
    old_spec = resolve_old_lm(args.old_lm, args.words, parse_use_phi(args.use_phi)) if args.old_lm else None
    old = open_old_lm(old_spec) if old_spec else None
    args.old_lm_description = old_spec.describe() if old_spec else None
    if args.hf_lm:
        from asr_lm_quant.rescore.hfscore import HFScorer
        scorer = HFScorer(args.hf_lm, device=args.device, token_budget=args.token_budget, bf16=args.bf16,
                          progress=args.progress)
    else:
        skip_normaliser = self_normalized(args)
        # A packed model stays packed unless asked (--dequantize: the float model its codes stand for).
        model, vocab = (load_any_lm if args.dequantize else load_lm_for_inference)(args.lm_dir, args.device)
        try:
            scorer = make_scorer(model, vocab, device=args.device, token_budget=args.token_budget,
                                 max_row=args.max_row, share_prefixes=not args.no_share_prefixes, bf16=args.bf16,
                                 progress=args.progress, self_normalized=skip_normaliser)
        except ValueError as e:
            raise InputError(args.lm_dir, str(e)) from None
    symbols = SymbolTable.load(args.words) if args.words else None
    return weights, scorer, old, symbols


def _finish(args, summary):
    summary["old_lm"] = getattr(args, "old_lm_description", None)
    log.info("rescored: %s", json.dumps(summary))
    if args.json:
        write_json_output(args.json, summary, overwrite=args.overwrite)


def _nbest(args):
    from asr_lm_quant.kaldi.nbest import read_kaldi_nbest_tables
    from asr_lm_quant.nbest.common import PER_TOKEN
    from asr_lm_quant.nbest.read import iter_groups, score_kind
    from asr_lm_quant.rescore.nbest import rescore_nbest_job
    if args.n < 1:
        raise InputError(None, f"--n {args.n}: the N-best size must be at least 1")
    if args.acwt is not None and not args.lattices:
        raise InputError(None, "--acwt applies to --lattices only (n-best files carry their costs unscaled)")
    if not args.words and (args.lattices or args.nbest_tables or args.out_lattices or args.out_tables):
        raise InputError(None, "--words is needed to read lattices or Kaldi tables and to write them")
    outs = _outputs(args.weight, out_lattices=args.out_lattices, out_nbest=args.out_nbest,
                    out_tables=args.out_tables)
    if not outs:
        raise InputError(None, "give at least one of --out-lattices, --out-nbest, --out-tables")
    if args.nbest_format != "auto" and not args.nbest:
        raise InputError(None, "--nbest-format applies to --nbest only")
    if args.nbest and score_kind(args.nbest, args.nbest_format) == PER_TOKEN:  # also finds a bad file early
        log.warning("%s: its acoustic costs are per-token averages and stay so in the output: decide with "
                    "--per-token-costs acoustic", args.nbest)
    _check_outputs(args, outs)
    prune = _prune_sweep(args, args.weight)
    weights, scorer, old, symbols = _setup(args)
    hyps = groups = None
    references: dict = {}  # those the n-best input carries, passed on in JSON-lines outputs
    if args.nbest:
        groups = iter_groups(args.nbest, args.nbest_format, references)
    elif args.nbest_tables:
        hyps = read_kaldi_nbest_tables(args.nbest_tables, symbols)
        hyps.sort(key=lambda h: (h.utterance, h.rank))
    summary = rescore_nbest_job(scorer=scorer, ngram_lm=old, symbols=symbols, weights=weights,
                                lattices=args.lattices, hyps=hyps, hyp_groups=groups, n=args.n,
                                acoustic_scale=0.1 if args.acwt is None else args.acwt,
                                oov_penalty=args.oov_penalty, out_lattices=outs.get("out_lattices"),
                                out_nbest=outs.get("out_nbest"), out_tables=outs.get("out_tables"),
                                overwrite=args.overwrite, prune=prune, references=references)
    _finish(args, summary)


def _prune_sweep(args, weights):
    """The :class:`PruneSweep` of ``--prune-lmwt/--prune-wips/--prune-beam``, or None."""
    from asr_lm_quant.rescore.nbest import PruneSweep
    if args.prune_lmwt is None:
        if args.prune_beam is not None:
            raise InputError(None, "--prune-beam needs --prune-lmwt")
        return None
    if args.hf_lm:
        raise InputError(args.hf_lm, "--prune-lmwt applies to --lm-dir models only")
    try:
        lo, hi = (int(x) for x in args.prune_lmwt.split(":"))
        wips = [float(x) for x in args.prune_wips.split(",")]
    except ValueError:
        raise InputError(None, f"--prune-lmwt {args.prune_lmwt!r} / --prune-wips {args.prune_wips!r}: expected "
                               "MIN:MAX (integers) and numbers separated by commas") from None
    if not 0 < lo <= hi:
        raise InputError(None, f"--prune-lmwt {args.prune_lmwt}: need 0 < MIN <= MAX")
    if args.prune_beam is not None and args.prune_beam < 0:
        raise InputError(None, f"--prune-beam {args.prune_beam}: must not be negative")
    return PruneSweep(list(weights), list(range(lo, hi + 1)), wips, beam=args.prune_beam)


def _lattice(args):
    from asr_lm_quant.rescore.lattice import rescore_lattice_job
    if not args.words:
        raise InputError(None, "--words is needed to read lattices")
    if not args.old_lm:
        raise InputError(None, "lattice rescoring needs --old-lm, the decoder's LM (ARPA, G.fst, G.carpa or lang "
                               "dir)")
    if args.beam <= 0 or not 0.0 <= args.epsilon <= 1.0:
        raise InputError(None, f"--beam must be positive and --epsilon in [0, 1] (got {args.beam}, {args.epsilon})")
    if args.method == "pruned":
        from asr_lm_quant.rescore.pruned import PrunedOptions
        if args.check:
            raise InputError(None, "--check applies to --method path-cover only")
        opts = PrunedOptions(order=args.ngram_order, beam=args.beam, max_states=args.max_states,
                             acoustic_scale=0.1 if args.acwt is None else args.acwt)
        opts.check()  # before the model is loaded
    outs = _outputs(args.weight, out_lattices=args.out_lattices)
    _check_outputs(args, outs)
    weights, scorer, old, symbols = _setup(args)
    if args.method == "pruned":
        from asr_lm_quant.rescore.pruned import rescore_lattice_pruned_job
        summary = rescore_lattice_pruned_job(scorer=scorer, ngram_lm=old, symbols=symbols, weights=weights,
                                             lattices=args.lattices, out_lattices=outs["out_lattices"], opts=opts,
                                             overwrite=args.overwrite)
        _finish(args, summary)
        return
    summary = rescore_lattice_job(scorer=scorer, ngram_lm=old, symbols=symbols, weights=weights,
                                  lattices=args.lattices, out_lattices=outs["out_lattices"],
                                  acoustic_scale=0.1 if args.acwt is None else args.acwt, beam=args.beam,
                                  epsilon=args.epsilon,
                                  check=args.check, overwrite=args.overwrite)
    _finish(args, summary)
