"""N-best lists: extraction from lattices, Kaldi's n-best text tables, and a plain format for other recognisers.

**Extraction** (``nbest_paths``, ``lattice_to_nbest``) follows ``lattice-to-nbest --acoustic-scale=S --n=N``:
the N cheapest paths under ``graph + S * acoustic`` (``lm_scale``, ``word_ins_penalty`` also available), each
returned with its unscaled graph and acoustic costs kept apart, as linear CompactLattices keyed ``utt-1 ..
utt-N`` (1-based). On a CompactLattice from Kaldi (word-determinized) every path is a distinct word sequence;
with ``unique=True`` (default) a repeated word sequence on other lattices is skipped, so the list holds
distinct word sequences each with its best path. ``unique=False`` is Kaldi's own behaviour (its N-shortest
paths are distinct state paths): on a state-level lattice (not word-determinized) two paths with the same words
are both listed, each under its own rank.

**Kaldi n-best tables** (what ``nbest-to-linear`` writes in ``steps/pytorchnn/lmrescore_nbest_pytorchnn.sh``):
``words`` lines ``utt-3 4512 87 19021 `` (integer word ids, each followed by a space); ``lmwt.nolm``,
``lmwt.withlm`` and ``acwt`` lines ``utt-3 123.457 `` (a float as C++ prints it, 6 significant digits, then a
space). Keys are ``<utt-id>-<rank>``, rank 1-based.

**Plain n-best format** for recognisers other than Kaldi, one hypothesis per row, either

* TSV (``.tsv``) with the header ``utterance\\trank\\ttext\\tacoustic_cost\\tlm_cost``, or
* JSON lines (``.jsonl``): ``{"utterance": ..., "rank": ..., "text": ..., "acoustic_cost": ..., "lm_cost": ...}``,
  optionally with ``"reference": "the reference words"`` (on one row of the utterance or more, the same each time:
  ``rescore-nbest`` puts it on an utterance's first row when its input carried references).

``text`` is the words separated by single spaces. ``acoustic_cost`` and ``lm_cost`` are **costs: negated
natural logarithms** (nats, lower is better), unscaled, as in Kaldi lattices: ``lm_cost`` is the whole graph
cost (LM + pronunciation + transition), ``acoustic_cost`` the acoustic cost. A recogniser that reports log10
probabilities must multiply them by ``-ln(10)``. Ranks are 1-based and rows of one utterance are contiguous.

The n-best lists other recognisers write (a generic JSON list, ESPnet decode dirs, Whisper / Hugging Face
``generate`` dumps, NeMo manifests) are read by :mod:`asr_lm_quant.nbest.read`, this one included.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.algorithms import (Path as LatticePath, arc_costs, final_costs, lattice_to_compact,
                                           path_from_arcs, shortest_distance_to_final, topological_order)
from asr_lm_quant.kaldi.lattice import Lattice, offsets_from_lengths
from asr_lm_quant.textio import read_lines, split_fields

log = logging.getLogger(__name__)
MAX_POPS = 2_000_000


# --- extraction -------------------------------------------------------------------------------------------
def nbest_paths(lat: Lattice, n: int, acoustic_scale=1.0, lm_scale=1.0, word_ins_penalty=0.0,
                *, unique: bool = True) -> list[LatticePath]:
    """The ``n`` cheapest complete paths, cheapest first (A* search with exact completion costs)."""
    if n < 1 or lat.start < 0:
        return []
    costs = arc_costs(lat, acoustic_scale, lm_scale, word_ins_penalty)
    fcosts = final_costs(lat, acoustic_scale, lm_scale)
    beta = shortest_distance_to_final(lat, costs, fcosts, topological_order(lat))
    if not np.isfinite(beta[lat.start]):
        return []
    offs = lat.arc_offsets()
    dst = lat.dst
    heap = [(float(beta[lat.start]), 0, lat.start, 0.0, None, False)]
    counter = 1
    out, seen = [], set()
    pops = 0
    while heap and len(out) < n and pops < MAX_POPS:
        pops += 1
        prio, _, s, g, node, done = heapq.heappop(heap)
        if done:
            arcs = []
            while node is not None:
                arcs.append(node[0])
                node = node[1]
            path = path_from_arcs(lat, arcs[::-1], s)
            if unique:
                words = tuple(path.words)
                if words in seen:
                    continue
                seen.add(words)
            out.append(path)
            continue
        if np.isfinite(fcosts[s]):
            heapq.heappush(heap, (g + fcosts[s], counter, s, g + fcosts[s], node, True))
            counter += 1
        for i in range(offs[s], offs[s + 1]):
            d = dst[i]
            if not np.isfinite(beta[d]):
                continue
            gi = g + costs[i]
            heapq.heappush(heap, (gi + beta[d], counter, int(d), gi, (i, node), False))
            counter += 1
    if pops >= MAX_POPS and len(out) < n and heap:
        log.warning("N-best search stopped after %d expansions with %d of the %d paths asked for (a lattice "
                    "with many paths of the same words); the list is shorter than --n", MAX_POPS, len(out), n)
    return out


def path_to_lattice(lat: Lattice, path: LatticePath) -> Lattice:
    """A linear CompactLattice of ``path``: its arcs with their weights and alignments, then its final weight.

    Epsilon arcs are kept (Kaldi keeps them too when it converts an n-best path back to a CompactLattice
    unless they carry nothing)."""
    arcs = path.arcs
    k = len(arcs)
    if lat.compact:
        alis = [lat.arc_alignment(i) for i in arcs]
        labels = lat.olabel[arcs]
    else:
        alis = [np.array([t], np.int32) if t else np.zeros(0, np.int32) for t in lat.ilabel[arcs]]
        labels = lat.olabel[arcs]
    fali = lat.final_alignment(path.final_state) if lat.compact else np.zeros(0, np.int32)
    fg = np.full(k + 1, np.inf)
    fa = np.full(k + 1, np.inf)
    fg[k], fa[k] = lat.final_graph[path.final_state], lat.final_acoustic[path.final_state]
    out = Lattice(True, 0, np.arange(k), np.arange(1, k + 1), labels, labels, lat.graph[arcs],
                  lat.acoustic[arcs], fg, fa, offsets_from_lengths([len(a) for a in alis]),
                  np.concatenate(alis) if alis else np.zeros(0, np.int32),
                  offsets_from_lengths([0] * k + [len(fali)]), fali)
    if lat.compact:
        from asr_lm_quant.kaldi.fst_binary import string_properties
        out.properties = string_properties(out)  # a string by construction: no graph search when written
    else:
        out = lattice_to_compact(out.replace(compact=False, ilabel=[a[0] if len(a) else 0 for a in alis],
                                             ali_offsets=None, ali=None, final_ali_offsets=None,
                                             final_ali=None))
    return out


def lattice_to_nbest(key: str, lat: Lattice, n: int, acoustic_scale=1.0, lm_scale=1.0, *, unique: bool = True):
    """``[(f"{key}-{r}", linear CompactLattice, path)]`` for the ``n`` best paths (``lattice-to-nbest``);
    ``unique=False`` keeps repeated word sequences as Kaldi does."""
    paths = nbest_paths(lat, n, acoustic_scale, lm_scale, unique=unique)
    return [(nbest_key(key, r), path_to_lattice(lat, p), p) for r, p in enumerate(paths, 1)]


# --- keys -------------------------------------------------------------------------------------------------
def nbest_key(utt: str, rank: int) -> str:
    return f"{utt}-{rank}"


_KEY_RE = re.compile(r"^(.+)-(\d+)$")


def split_nbest_key(key: str) -> tuple[str, int]:
    """``"sw02001-A_000098-001156-3"`` -> ``("sw02001-A_000098-001156", 3)``."""
    m = _KEY_RE.match(key)
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"{key!r} is not an n-best key (<utt-id>-<rank>, rank from 1)")
    return m.group(1), int(m.group(2))


# --- Kaldi text tables ------------------------------------------------------------------------------------
def format_kaldi_float(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return "%g" % float(np.float32(x))


def _table_lines(path):
    for n, line in read_lines(path):
        fields = split_fields(line)
        if fields:
            yield n, fields


def read_int_vector_table(path) -> dict[str, list[int]]:
    """``key i1 i2 ...`` lines (Kaldi's ``ark,t:`` int-vector tables, e.g. n-best ``words``)."""
    out = {}
    for n, f in _table_lines(path):
        key = f[0]
        if key in out:
            raise InputError(path, "duplicate key", line=n, key=key)
        try:
            out[key] = [int(x) for x in f[1:]]
        except ValueError:
            raise InputError(path, f"non-integer in {' '.join(f[1:])!r}", line=n, key=key) from None
    return out


def read_float_table(path) -> dict[str, float]:
    """``key value`` lines (Kaldi's ``ark,t:`` float tables: ``lmwt.*``, ``acwt``)."""
    out = {}
    for n, f in _table_lines(path):
        key = f[0]
        if len(f) != 2:
            raise InputError(path, f"expected 'key value', got {' '.join(f)!r}", line=n, key=key)
        if key in out:
            raise InputError(path, "duplicate key", line=n, key=key)
        try:
            v = float(f[1])
        except ValueError:
            raise InputError(path, f"not a number: {f[1]!r}", line=n, key=key) from None
        if math.isnan(v):
            raise InputError(path, "NaN value", line=n, key=key)
        out[key] = v
    return out


def int_vector_line(key: str, ids) -> str:
    """``key i1 i2 ... `` and a newline (each value followed by a space, as Kaldi writes it)."""
    return key + " " + "".join(f"{int(i)} " for i in ids) + "\n"


def float_line(key: str, v: float) -> str:
    """``key value `` and a newline (value as C++ prints a float, then a space)."""
    return f"{key} {format_kaldi_float(v)} \n"


def write_int_vector_table(path, table, *, overwrite=True) -> None:
    """Write ``key i1 i2 ... `` lines in the order given."""
    with atomic_open(path, overwrite=overwrite) as f:
        for key, ids in (table.items() if isinstance(table, dict) else table):
            f.write(int_vector_line(key, ids))


def write_float_table(path, table, *, overwrite=True) -> None:
    """Write ``key value `` lines in the order given."""
    with atomic_open(path, overwrite=overwrite) as f:
        for key, v in (table.items() if isinstance(table, dict) else table):
            f.write(float_line(key, v))


# --- hypotheses -------------------------------------------------------------------------------------------
@dataclass
class NbestHyp:
    utterance: str
    rank: int  # 1-based
    words: list  # word strings
    acoustic_cost: float  # negated natural log, unscaled
    lm_cost: float  # graph cost: negated natural log, unscaled

    @property
    def text(self) -> str:
        return " ".join(self.words)


def hyps_from_paths(utt: str, paths, symbols) -> list[NbestHyp]:
    return [NbestHyp(utt, r, symbols.words(p.words, key=nbest_key(utt, r)), p.acoustic_cost, p.graph_cost)
            for r, p in enumerate(paths, 1)]


def write_kaldi_nbest_tables(out_dir, hyps, symbols, *, lm_file: str = "lmwt.withlm",
                             overwrite=True) -> None:
    """Write ``words``, ``acwt`` and ``lm_file`` (graph costs) for ``hyps`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hyps = list(hyps)
    keys = [nbest_key(h.utterance, h.rank) for h in hyps]
    write_int_vector_table(out_dir / "words", [(k, symbols.ids(h.words, key=k)) for k, h in zip(keys, hyps)],
                           overwrite=overwrite)
    write_float_table(out_dir / "acwt", [(k, h.acoustic_cost) for k, h in zip(keys, hyps)], overwrite=overwrite)
    write_float_table(out_dir / lm_file, [(k, h.lm_cost) for k, h in zip(keys, hyps)], overwrite=overwrite)


def read_kaldi_nbest_tables(nbest_dir, symbols, *, lm_file: str = "lmwt.withlm") -> list[NbestHyp]:
    """Read ``words``, ``acwt`` and ``lm_file`` from ``nbest_dir``; keys must agree across the files."""
    d = Path(nbest_dir)
    words = read_int_vector_table(d / "words")
    ac = read_float_table(d / "acwt")
    lm = read_float_table(d / lm_file)
    out = []
    for key, ids in words.items():
        for name, t in (("acwt", ac), (lm_file, lm)):
            if key not in t:
                raise InputError(d / name, "key missing (present in words)", key=key)
        try:
            utt, rank = split_nbest_key(key)
        except ValueError as e:
            raise InputError(d / "words", str(e), key=key) from None
        out.append(NbestHyp(utt, rank, symbols.words(ids, key=key), ac[key], lm[key]))
    for name, t in (("acwt", ac), (lm_file, lm)):
        extra = sorted(set(t) - set(words))
        if extra:
            raise InputError(d / name, "key not in words", key=extra[0])
    return out


# --- plain formats ----------------------------------------------------------------------------------------
TSV_HEADER = ["utterance", "rank", "text", "acoustic_cost", "lm_cost"]


def _fmt(x: float) -> str:
    return repr(float(x))


def nbest_row(h: "NbestHyp", jsonl: bool, reference=None) -> str:
    """One hypothesis as a line of our TSV or JSON-lines format; ``reference`` (words; JSON lines only): the
    utterance's reference, carried along for scoring."""
    if jsonl:
        row = {"utterance": h.utterance, "rank": h.rank, "text": h.text,
               "acoustic_cost": float(h.acoustic_cost), "lm_cost": float(h.lm_cost)}
        if reference is not None:
            row["reference"] = " ".join(reference)
        return json.dumps(row) + "\n"
    if "\t" in h.text or "\n" in h.text:
        raise ValueError(f"{h.utterance}: text has a tab or newline")
    return f"{h.utterance}\t{h.rank}\t{h.text}\t{_fmt(h.acoustic_cost)}\t{_fmt(h.lm_cost)}\n"


def is_jsonl(path) -> bool:
    return Path(path).suffix in (".jsonl", ".json")


def write_nbest(path, hyps, *, overwrite=True) -> None:
    """Write hypotheses as TSV (``.tsv``) or JSON lines (``.jsonl``/``.json``), chosen by the suffix."""
    jsonl = is_jsonl(path)
    with atomic_open(path, overwrite=overwrite) as f:
        if not jsonl:
            f.write("\t".join(TSV_HEADER) + "\n")
        for h in hyps:
            f.write(nbest_row(h, jsonl))


def _hyp(path, n, utt, rank, text, ac, lm, *, typed: bool = False):
    """One row as a hypothesis, checked. ``typed`` (JSON): values must already have their types (a rank of
    1.7 or a cost of ``true`` is an error, not coerced)."""
    if typed:
        if not isinstance(rank, int) or isinstance(rank, bool):
            raise InputError(path, f"rank must be an integer, not {json.dumps(rank)}", line=n, key=utt)
        for name, v in (("acoustic_cost", ac), ("lm_cost", lm)):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise InputError(path, f"{name} must be a number, not {json.dumps(v)}", line=n, key=utt)
        if not isinstance(utt, str) or not isinstance(text, str):
            raise InputError(path, "utterance and text must be strings", line=n)
    try:
        rank = int(rank)
        ac, lm = float(ac), float(lm)
    except (TypeError, ValueError):
        raise InputError(path, "rank must be an integer and costs numbers", line=n, key=utt) from None
    if rank < 1:
        raise InputError(path, f"rank {rank} (ranks start at 1)", line=n, key=utt)
    if not (math.isfinite(ac) and math.isfinite(lm)):
        raise InputError(path, f"costs must be finite numbers, got {ac} and {lm}", line=n, key=utt)
    if not isinstance(text, str) or split_fields(utt) != [utt]:
        raise InputError(path, "bad utterance id or text", line=n, key=utt)
    return NbestHyp(utt, rank, split_fields(text), ac, lm)


def _rows(path, jsonl: bool):
    """(line number, hypothesis, reference text or None) for each row of a plain n-best file."""
    seen_header = jsonl
    for n, line in read_lines(path):
        line = line.rstrip("\r")
        if not split_fields(line):
            continue
        if jsonl:
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"bad JSON: {e.msg}", line=n) from None
            if not isinstance(d, dict) or any(k not in d for k in TSV_HEADER):
                raise InputError(path, f"expected an object with {', '.join(TSV_HEADER)}", line=n)
            ref = d.get("reference")
            if ref is not None and not isinstance(ref, str):
                raise InputError(path, "the reference must be a string", line=n, key=d["utterance"])
            yield n, _hyp(path, n, d["utterance"], d["rank"], d["text"], d["acoustic_cost"], d["lm_cost"],
                          typed=True), ref
            continue
        fields = line.split("\t")
        if not seen_header:
            if fields != TSV_HEADER:
                raise InputError(path, f"header must be {chr(9).join(TSV_HEADER)!r}", line=n)
            seen_header = True
            continue
        if len(fields) != 5:
            raise InputError(path, f"expected 5 tab-separated fields, got {len(fields)}", line=n)
        yield n, _hyp(path, n, *fields), None
    if not seen_header:
        raise InputError(path, "empty file (no header line)")


def iter_ours(path, references: dict | None = None):
    """Stream ``[NbestHyp, ...]`` per utterance from our plain n-best file (TSV or JSON lines, by suffix),
    holding one utterance at a time. Rows of an utterance must be contiguous and their ranks distinct. The
    references that JSON lines carry go into ``references`` (``{utt: words}``) before their utterance is
    yielded."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, not an n-best file")
    jsonl = is_jsonl(path)
    done: set = set()
    group: list = []
    ranks: set = set()
    any_rows = False
    for n, h, ref in _rows(path, jsonl):
        any_rows = True
        if ref is not None and references is not None:
            words = split_fields(ref)
            if references.setdefault(h.utterance, words) != words:
                raise InputError(path, "a second, different reference for this utterance", line=n,
                                 key=h.utterance)
        if group and h.utterance != group[0].utterance:
            yield group
            group, ranks = [], set()
        if not group:
            if h.utterance in done:
                raise InputError(path, "rows of this utterance are not contiguous", line=n, key=h.utterance)
            done.add(h.utterance)
        if h.rank in ranks:
            raise InputError(path, f"rank {h.rank} appears twice for this utterance", line=n, key=h.utterance)
        ranks.add(h.rank)
        group.append(h)
    if group:
        yield group
    if not any_rows:  # a job with no utterances (an empty split): passes, as Kaldi's tools do, with a word
        log.warning("%s: no hypotheses (a job with no utterances?); nothing to read", path)


def group_by_utterance(hyps) -> dict[str, list[NbestHyp]]:
    out: dict[str, list[NbestHyp]] = {}
    for h in hyps:
        out.setdefault(h.utterance, []).append(h)
    for v in out.values():
        v.sort(key=lambda h: h.rank)
    return out
