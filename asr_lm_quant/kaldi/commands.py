"""CLI: ``lattice-copy``, ``lattice-info``, ``lattice-to-nbest`` (thin layers over the kaldi package)."""

from __future__ import annotations

import json
import sys
import time

from asr_lm_quant.cli_args import add_command, add_quiet_option, positive_int
from asr_lm_quant.errors import InputError
from asr_lm_quant.progress import bar as progress_bar


def register(sub) -> None:
    p = add_command(
        sub, "lattice-copy", help="copy lattices between Kaldi archives (binary/text, gzip)",
        description="Copy a lattice table, e.g. 'ark:gunzip -c lat.1.gz|' -> 'ark,t:-'. As Kaldi's "
                    "lattice-copy: binary unless the wspecifier has ',t'.",
        example="asr-lm-quant lattice-copy 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|' ark,t:lat.1.txt")
    p.add_argument("rspecifier", help="input lattices, e.g. 'ark:gunzip -c lat.1.gz|' or a lat.N.gz file")
    p.add_argument("wspecifier", help="output lattices, e.g. ark,t:lat.txt or 'ark:|gzip -c > lat.1.gz'")
    p.add_argument("--write-lattice", action="store_true",
                   help="write Lattice (transition-ids as ilabels) instead of keeping each lattice's type")
    p.add_argument("--write-compact", action="store_true", help="write CompactLattice")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.set_defaults(func=_copy)

    p = add_command(
        sub, "lattice-info", help="statistics of a lattice table (JSON)",
        description="Reads every lattice of a table and prints one JSON line of totals: lattices, states, arcs, "
                    "frames, arcs per frame, words on the best paths, empty lattices; with --per-lattice, one "
                    "line per lattice first (its best path's words and costs).",
        example="asr-lm-quant lattice-info --per-lattice 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|'")
    p.add_argument("rspecifier", help="input lattices, e.g. 'ark:gunzip -c lat.1.gz|' or a lat.N.gz file")
    p.add_argument("--acwt", dest="acoustic_scale", type=float, default=0.1,
                   help="acoustic scale of the best path")
    p.alias("--acoustic-scale", "--acwt")
    p.add_argument("--per-lattice", action="store_true", help="one JSON line per lattice, then the totals")
    p.set_defaults(func=_info)

    p = add_command(
        sub, "lattice-to-nbest", help="N-best paths of each lattice (as Kaldi's lattice-to-nbest)",
        description="Writes linear CompactLattices keyed <utt>-1..<utt>-N to WSPECIFIER, and optionally the "
                    "plain n-best file (--nbest, needs --words) and Kaldi's n-best tables (--tables-dir: words, "
                    "acwt, lmwt.withlm).",
        example="asr-lm-quant lattice-to-nbest --nbest-size 20 --words data/lang/words.txt "
                "--nbest exp/nbest/dev.tsv 'ark:gunzip -c exp/tri4/decode_dev/lat.1.gz|'")
    p.add_argument("rspecifier", help="input lattices, e.g. 'ark:gunzip -c lat.1.gz|' or a lat.N.gz file")
    p.add_argument("wspecifier", nargs="?", help="output lattices (omit to write only --nbest/--tables-dir)")
    p.add_argument("--nbest-size", dest="n", type=positive_int, default=10, metavar="N",
                   help="paths per lattice (N of Kaldi's lattice-to-nbest)")
    p.alias("--n", "--nbest-size")
    p.add_argument("--acwt", dest="acoustic_scale", type=float, default=0.1,
                   help="acoustic scale for choosing the paths")
    p.alias("--acoustic-scale", "--acwt")
    p.add_argument("--lm-scale", type=float, default=1.0, help="graph (LM) scale for choosing the paths")
    p.add_argument("--words", help="words.txt (for --nbest and --tables-dir)")
    p.add_argument("--keep-duplicates", action="store_true",
                   help="list every one of the N cheapest paths, as Kaldi's lattice-to-nbest does, even when two "
                        "paths of a state-level lattice have the same words (otherwise: distinct word sequences, "
                        "each with its best path)")
    p.alias("--kaldi-exact", "--keep-duplicates")
    p.add_argument("--nbest", help="plain n-best output, .tsv or .jsonl")
    p.add_argument("--tables-dir", help="directory for Kaldi n-best tables")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    add_quiet_option(p)
    p.set_defaults(func=_to_nbest)


def _check_outputs(args, wspecs=(), files=()):
    from asr_lm_quant.atomic import check_writable
    from asr_lm_quant.kaldi.specifiers import output_files
    for f in [x for w in wspecs if w for x in output_files(w)] + [f for f in files if f]:
        check_writable(f, overwrite=args.overwrite)


def _bad_lattice(rspec, key, e):
    return InputError(rspec, f"not a valid decoder lattice: {e}", key=key)


def _copy(args) -> int:
    from asr_lm_quant.kaldi.archive import LatticeWriter, read_lattices
    if args.write_lattice and args.write_compact:
        raise InputError(None, "--write-lattice and --write-compact exclude each other")
    _check_outputs(args, [args.wspecifier])
    kind = "lattice" if args.write_lattice else "compact" if args.write_compact else None
    n = 0
    with LatticeWriter(args.wspecifier, kind=kind, overwrite=args.overwrite) as w:
        for key, lat in read_lattices(args.rspecifier):
            w.write(key, lat)
            n += 1
        if n == 0:
            raise InputError(args.rspecifier, "holds no lattices (nothing copied)")
    print(f"lattice-copy: copied {n} lattices from {args.rspecifier} to {args.wspecifier}", file=sys.stderr)
    return 0


def _info(args) -> int:
    from asr_lm_quant.kaldi import algorithms as alg
    from asr_lm_quant.kaldi.archive import read_lattices
    tot = dict(lattices=0, states=0, arcs=0, frames=0, words_best=0, compact=0, empty=0)
    t0 = time.time()
    for key, lat in read_lattices(args.rspecifier):
        tot["lattices"] += 1
        tot["states"] += lat.num_states
        tot["arcs"] += lat.num_arcs
        tot["compact"] += int(lat.compact)
        try:
            frames = alg.num_frames(lat)
            best = alg.best_path(lat, acoustic_scale=args.acoustic_scale)
        except ValueError as e:  # a cycle, or a state reached at different frames
            raise _bad_lattice(args.rspecifier, key, e) from None
        tot["frames"] += frames
        if best is None:
            tot["empty"] += 1
        else:
            tot["words_best"] += len(best.words)
        if args.per_lattice:
            print(json.dumps({"key": key, "type": "CompactLattice" if lat.compact else "Lattice",
                              "states": lat.num_states, "arcs": lat.num_arcs, "frames": frames,
                              "best_words": best.words if best else None,
                              "best_graph_cost": best.graph_cost if best else None,
                              "best_acoustic_cost": best.acoustic_cost if best else None}))
    tot["arcs_per_frame"] = tot["arcs"] / tot["frames"] if tot["frames"] else None
    tot["seconds"] = round(time.time() - t0, 3)
    print(json.dumps(tot))
    return 0


def _to_nbest(args) -> int:
    from asr_lm_quant.kaldi.archive import LatticeWriter, read_lattices
    from asr_lm_quant.kaldi.nbest import hyps_from_paths, lattice_to_nbest, write_kaldi_nbest_tables, write_nbest
    from asr_lm_quant.kaldi.symbols import SymbolTable
    if not (args.wspecifier or args.nbest or args.tables_dir):
        raise InputError(None, "nothing to write: give a wspecifier, --nbest or --tables-dir")
    if (args.nbest or args.tables_dir) and not args.words:
        raise InputError(None, "--nbest and --tables-dir need --words words.txt")
    tables = ("words", "acwt", "lmwt.withlm")
    _check_outputs(args, [args.wspecifier], [args.nbest] + [f"{args.tables_dir}/{t}" for t in tables
                                                            if args.tables_dir])
    symbols = SymbolTable.load(args.words) if args.words else None
    writer = LatticeWriter(args.wspecifier, overwrite=args.overwrite) if args.wspecifier else None
    hyps = []
    ok = False
    try:
        for key, lat in progress_bar(read_lattices(args.rspecifier), desc="lattice-to-nbest", unit=" lat",
                                     mininterval=2.0):
            try:
                entries = lattice_to_nbest(key, lat, args.n, args.acoustic_scale, args.lm_scale,
                                           unique=not args.keep_duplicates)
            except ValueError as e:
                raise _bad_lattice(args.rspecifier, key, e) from None
            for k, linear, _ in entries:
                if writer:
                    writer.write(k, linear)
            if symbols:
                hyps.extend(hyps_from_paths(key, [p for _, _, p in entries], symbols))
        ok = True
    finally:
        if writer:
            writer.close(ok=ok)
    if args.nbest:
        write_nbest(args.nbest, hyps, overwrite=args.overwrite)
    if args.tables_dir:
        write_kaldi_nbest_tables(args.tables_dir, hyps, symbols, overwrite=args.overwrite)
    return 0
