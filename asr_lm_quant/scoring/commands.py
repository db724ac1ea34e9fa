"""``asr-lm-quant score-kaldi``, ``score-hub5``, ``wer`` and ``wer-compare``: thin layers over the scoring modules."""

from __future__ import annotations

import json
from pathlib import Path

from asr_lm_quant.cli_args import add_command, add_json_option, add_quiet_option, number_strings, positive_int, \
    write_json_output
from asr_lm_quant.errors import InputError


def _common(p, min_lmwt, max_lmwt):
    p.add_argument("--min-lmwt", type=int, default=min_lmwt, help="lowest LM weight")
    p.add_argument("--max-lmwt", type=int, default=max_lmwt, help="highest LM weight")
    p.add_argument("--word-ins-penalty", type=number_strings, default=["0.0", "0.5", "1.0"],
                   help="comma-separated word insertion penalties")
    p.add_argument("--hyp", action="append", default=[], metavar="LMWT:WIP:FILE",
                   help="score this hypothesis text as setting LMWT/WIP instead of reading lat.*.gz "
                        "(repeatable; e.g. 10:0.0:rescored.txt)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plot")
    add_quiet_option(p)


def _hyp_settings(specs):
    from asr_lm_quant.scoring.sweep import Setting, parse_wips
    out = {}
    for spec in specs:
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise InputError(None, f"--hyp {spec!r}: expected LMWT:WIP:FILE")
        try:
            lmwt = float(parts[0])
        except ValueError:
            raise InputError(None, f"--hyp {spec!r}: LM weight is not a number") from None
        wip = parse_wips(parts[1])[0]
        from asr_lm_quant.textio import check_readable_once
        path = Path(parts[2])
        check_readable_once(path, "hypothesis file")  # a pipe or FIFO too: each is read once
        out[Setting(lmwt, wip)] = path
    return out


def cmd_score_kaldi(args) -> int:
    from asr_lm_quant.scoring.kaldi_sweep import sweep_decode_dir, sweep_texts
    if args.mbr_beam is not None and not args.mbr_beam >= 0:
        raise InputError(None, f"--mbr-beam must be a non-negative number, not {args.mbr_beam}")
    if args.hyp and args.decode_mbr:
        raise InputError(None, "--decode-mbr needs the lattices of the decode dir; it cannot be used with --hyp "
                               "(hypothesis texts have no alternatives to take the risk over)")
    data = Path(args.data_dir)
    if not (data / "text").is_file():
        raise InputError(data / "text", "reference text does not exist")
    earlier = sorted(Path(args.decode_dir).glob("wer_*_*")) + sorted(
        Path(args.decode_dir).glob("scoring_kaldi/best_wer"))
    if earlier and not args.overwrite:
        raise InputError(args.decode_dir, f"already scored ({earlier[0].name} exists); give --overwrite to "
                                          "score it again")
    if args.hyp:
        summary = sweep_texts(data, _hyp_settings(args.hyp), args.decode_dir, hyp_filter=args.hyp_filter,
                              hyp_filter_cmd=args.hyp_filter_cmd, ref_filter_cmd=args.ref_filter_cmd,
                              stats=not args.no_stats, plot=not args.no_plot)
    else:
        summary = sweep_decode_dir(data, args.lang, args.decode_dir, min_lmwt=args.min_lmwt,
                                   max_lmwt=args.max_lmwt, wips=args.word_ins_penalty,
                                   hyp_filter=args.hyp_filter, hyp_filter_cmd=args.hyp_filter_cmd,
                                   ref_filter_cmd=args.ref_filter_cmd, recipe_filters=args.recipe_filters,
                                   stats=not args.no_stats, plot=not args.no_plot, decode_mbr=args.decode_mbr,
                                   mbr_beam=args.mbr_beam)
    print(summary["best"]["best_wer"])
    return 0


def cmd_score_hub5(args) -> int:
    from asr_lm_quant.scoring.hub5 import hub5_score_texts, hub5_sweep
    kw = dict(glm=args.glm, stm=args.stm, name=args.name, sctk_bin=args.sctk_bin, nj=args.nj,
              plot=not args.no_plot)
    if args.hyp:
        summary = hub5_score_texts(args.data_dir, _hyp_settings(args.hyp), args.decode_dir, **kw)
    else:
        summary = hub5_sweep(args.data_dir, args.lang, args.decode_dir, min_lmwt=args.min_lmwt,
                             max_lmwt=args.max_lmwt, wips=args.word_ins_penalty, frame_shift=args.frame_shift,
                             **kw)
    for sub in summary["subsets"].values():
        print(sub["best_wer"])
    return 0


def cmd_wer(args) -> int:
    from asr_lm_quant.scoring.kaldi_sweep import score_hyp_file
    res = score_hyp_file(args.ref, args.hyp, out_dir=args.out_dir, utt2spk=args.utt2spk,
                         hyp_filter=args.hyp_filter, mode=args.mode, sclite=args.sclite)
    if args.json:
        write_json_output(args.json, res.to_dict())
    else:
        print(res.kaldi_report(), end="")
    return 0


def load_systems(inputs, *, ref=None, names=None, sclite=False, need_ops=False):
    """Each input as :class:`~.significance.SystemErrors`: hypothesis texts scored against ``ref``, or (without
    ``ref``) Kaldi per_utt tables; all checked to cover the same utterances."""
    from asr_lm_quant.scoring import significance as sig
    from asr_lm_quant.scoring.textfile import read_text
    from asr_lm_quant.scoring.wer import score_texts
    if names is None:
        names = [str(p) for p in inputs]
    if len(names) != len(inputs):
        raise InputError(None, f"--names gives {len(names)} names for {len(inputs)} systems")
    if len(set(names)) != len(names):
        raise InputError(None, f"system names must differ: {', '.join(names)}")
    from asr_lm_quant.textio import check_readable_once
    for path in [ref, *inputs]:
        if path is not None:
            check_readable_once(path, None)
    systems = []
    if ref is None:
        systems = [sig.read_per_utt(p, name) for p, name in zip(inputs, names)]
    else:
        ref_words = read_text(ref)
        if not ref_words:
            raise InputError(ref, "reference text is empty")
        for p, name in zip(inputs, names):
            hyp = read_text(p)
            extra = next((k for k in hyp if k not in ref_words), None)
            if extra is not None:
                raise InputError(p, f"utterance is not in the reference {ref}; the systems must be scored on "
                                    "the same utterances", key=extra)
            missing = next((k for k in ref_words if k not in hyp), None)
            if missing is not None:
                raise InputError(p, f"no hypothesis for this utterance of the reference {ref}; the systems must "
                                    "be scored on the same utterances", key=missing)
            res = score_texts(ref_words, hyp, mode="strict", sclite=sclite, align=need_ops, hyp_name=str(p))
            systems.append(sig.from_result(name, p, res))
    return sig.check_same_utterances(systems)


def cmd_wer_compare(args) -> int:
    from asr_lm_quant.atomic import check_writable
    from asr_lm_quant.scoring import significance as sig
    if len(args.inputs) < 2:
        raise InputError(None, "give at least two systems to compare")
    if args.json and args.json != "-":
        check_writable(args.json, overwrite=args.overwrite, what="JSON output")
    if args.samples < 1:
        raise InputError(None, f"--samples must be at least 1, not {args.samples}")
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    systems = load_systems(args.inputs, ref=args.ref, names=names, sclite=args.sclite,
                           need_ops=args.segments == "sctk")
    by_name = {s.name: s for s in systems}
    if args.baseline is not None:
        if args.baseline not in by_name:
            raise InputError(None, f"--baseline {args.baseline!r} is not one of the systems ({', '.join(by_name)})")
        pairs = [(by_name[args.baseline], s) for s in systems if s.name != args.baseline]
    else:
        pairs = [(a, b) for i, a in enumerate(systems) for b in systems[i + 1:]]
    comparisons = [sig.compare(a, b, segments=args.segments, min_good=args.min_good, samples=args.samples,
                               seed=args.seed) for a, b in pairs]
    print(sig.comparisons_markdown(comparisons), end="")
    if args.json:
        out = {"reference": args.ref, "counts": "sclite" if args.sclite else "kaldi", "segments": args.segments,
               "alpha": sig.ALPHA, "systems": [s.summary() for s in systems], "comparisons": comparisons}
        write_json_output(args.json, out)
    return 0


def register(sub) -> None:
    p = add_command(sub, "score-kaldi", help="Kaldi-style WER sweep over LM weight and insertion penalty",
                    example="asr-lm-quant score-kaldi data/dev data/lang exp/tri4/decode_dev",
                    description="As Kaldi's steps/scoring/score_kaldi_wer.sh: writes <decode-dir>/wer_LMWT_WIP, "
                                "scoring_kaldi/penalty_WIP/LMWT.txt, scoring_kaldi/best_wer, "
                                "scoring_kaldi/wer_details/ and sweep.json/sweep.md/wer_vs_lmwt.png.")
    p.add_argument("data_dir", help="data dir with text (and utt2spk for per-speaker details)")
    p.add_argument("lang", help="lang or graph dir holding words.txt, or words.txt itself")
    p.add_argument("decode_dir", help="decode dir with lat.*.gz (or the output dir with --hyp)")
    _common(p, 7, 17)
    p.add_argument("--hyp-filter", choices=["none", "hub5"], default="none",
                   help="built-in hypothesis filter: none (as Kaldi) or hub5 (Switchboard's removals)")
    p.add_argument("--hyp-filter-cmd", help="shell filter for hypothesis files (like local/wer_hyp_filter)")
    p.add_argument("--ref-filter-cmd", help="shell filter for data/text (like local/wer_ref_filter)")
    p.add_argument("--recipe-filters", action="store_true",
                   help="use ./local/wer_{hyp,ref,output}_filter when executable, as Kaldi does")
    p.add_argument("--no-stats", action="store_true", help="skip scoring_kaldi/wer_details")
    p.add_argument("--decode-mbr", action="store_true",
                   help="minimum Bayes risk decoding instead of the best path (Kaldi's --decode-mbr true: "
                        "lattice-prune --beam=MBR_BEAM | lattice-mbr-decode, per LM weight and penalty)")
    p.add_argument("--mbr-beam", type=float, default=6.0,
                   help="with --decode-mbr: prune the scaled lattice to this beam first (Kaldi's value)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier scoring of the decode dir (steps/score_kaldi.sh always does, as Kaldi)")
    p.set_defaults(func=cmd_score_kaldi)

    p = add_command(sub, "score-hub5", help="Hub5 (eval2000/rt03) scoring with SCTK hubscr, best WER per subset",
                    example="asr-lm-quant score-hub5 data/eval2000 data/lang_sw1_tg exp/chain/decode_eval2000",
                    description="As Switchboard's local/score_sclite.sh: writes <decode-dir>/score_LMWT_WIP/ "
                                "(<name>.ctm, hubscr reports) and scoring/best_wer, hub5_summary.json/.md.")
    p.add_argument("data_dir", help="data dir with segments, reco2file_and_channel, stm and glm")
    p.add_argument("lang", help="lang or graph dir holding words.txt, or words.txt itself")
    p.add_argument("decode_dir", help="decode dir with lat.*.gz (or the output dir with --hyp)")
    _common(p, 5, 17)
    p.add_argument("--frame-shift", type=float, default=0.03,
                   help="seconds per frame of the lattice alignments (0.03 for chain models, 0.01 otherwise)")
    p.add_argument("--glm", help="GLM file (default: <data-dir>/glm)")
    p.add_argument("--stm", help="STM file (default: <data-dir>/stm)")
    p.add_argument("--name", help="set name for file names and subsets (default: the data dir's name)")
    p.add_argument("--sctk-bin", help="folder with sclite and hubscr.pl (default: $SCTK_BIN, Kaldi's, Debian's)")
    p.add_argument("--nj", type=positive_int, default=2, help="hubscr runs at once")
    p.set_defaults(func=cmd_score_hub5)
    _register_wer(sub)


def _register_wer(sub):
    """``wer`` and ``wer-compare``: one hypothesis text, or several systems side by side."""
    p = add_command(sub, "wer", help="WER of one hypothesis text against a reference text (compute-wer's report)",
                    description="Counts the word errors of a hypothesis text against a reference text (both "
                                "Kaldi text: utterance id, then words) as Kaldi's compute-wer does, and prints "
                                "its report (or JSON with --json); --out-dir also writes wer and "
                                "wer_details/ as score_kaldi.sh does.",
                    example="asr-lm-quant wer data/test/text exp/decide/test/text --json exp/decide/test_wer.json")
    p.add_argument("ref", help="reference text (utt-id words)")
    p.add_argument("hyp", help="hypothesis text (utt-id words)")
    p.add_argument("--mode", choices=["present", "all", "strict"], default="present",
                   help="as compute-wer --mode: present (score the utterances present in both), all, strict")
    p.add_argument("--sclite", action="store_true", help="count errors as sclite does (3/3/4 costs)")
    p.add_argument("--hyp-filter", choices=["none", "hub5"], default="none",
                   help="built-in hypothesis filter: none, or hub5 (Switchboard's removals)")
    p.add_argument("--out-dir", help="also write wer and wer_details/ (per_utt, per_spk, ops) here")
    p.add_argument("--utt2spk", help="utt2spk for wer_details/per_spk")
    add_json_option(p, "the counts (instead of the report)", bare_is_stdout=True)
    p.set_defaults(func=cmd_wer)

    p = add_command(sub, "wer-compare",
                    help="significance of WER differences between systems on the same utterances",
                    example="asr-lm-quant wer-compare --ref data/test/text exp/decide_fp/test/text "
                            "exp/decide_ptq4/test/text --names fp,ptq4 --json exp/compare.json",
                    description="Pairwise MAPSSWE test (as SCTK's sc_stats), paired bootstrap (Bisani & Ney) and "
                                "sign test of WER differences. Inputs are hypothesis texts scored against --ref, "
                                "or (without --ref) Kaldi wer_details/per_utt tables. Prints a markdown table; "
                                "differences are B - A.")
    p.add_argument("inputs", nargs="+", metavar="SYSTEM",
                   help="hypothesis texts (utt-id words) with --ref, else per_utt files (two or more)")
    p.add_argument("--ref", help="reference text (utt-id words); every hypothesis must cover exactly its utterances")
    p.add_argument("--names", help="comma-separated system names (default: the file names as given)")
    p.add_argument("--baseline", help="compare every other system with this one (default: all pairs)")
    p.add_argument("--sclite", action="store_true", help="count errors as sclite does (3/3/4 costs)")
    p.add_argument("--segments", choices=["utterance", "sctk"], default="utterance",
                   help="MAPSSWE segments: utterance (whole utterances) or sctk (sc_stats's cut at --min-good right "
                        "words)")
    p.add_argument("--min-good", type=int, default=2,
                   help="right words that end an sctk segment (as sc_stats)")
    p.add_argument("--samples", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_json_option(p, "the comparisons too")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=cmd_wer_compare)
