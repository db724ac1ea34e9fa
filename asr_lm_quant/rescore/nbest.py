"""N-best rescoring: replace the old n-gram LM in each hypothesis' graph cost by an NN/n-gram interpolation.

For a hypothesis with graph cost ``g`` (old LM + transition + pronunciation + silence), old n-gram cost ``o``
(from its ARPA file, G.fst or G.carpa, ``<s>``/``</s>`` included, nats) and NN cost ``c``:

    graph_without_lm = g - o
    new_graph(w)     = graph_without_lm + w * c + (1 - w) * o

as Kaldi's ``steps/pytorchnn/lmrescore_nbest_pytorchnn.sh`` does (there ``o`` comes from ``G.carpa``).
:func:`rescore_hypotheses` returns the new graph costs for many weights at once (sweeping ``w`` is one call);
:func:`rescore_nbest_job` runs a whole ``lat.JOB.gz`` (or n-best file) and writes, per weight, rescored
n-best lists (Kaldi tables and/or our TSV/JSONL) and rescored lattices: per utterance the union of the
linear lattices of its hypotheses, keyed by the utterance id, as ``linear-to-nbest | nbest-to-lattice``
writes them, so Kaldi's scoring scripts read them as they read any decode dir.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import LatticeWriter, read_lattices
from asr_lm_quant.kaldi.lattice import Lattice, linear_lattice, union_lattices
from asr_lm_quant.kaldi.nbest import (TSV_HEADER, NbestHyp, float_line, int_vector_line, is_jsonl, nbest_key,
                                      nbest_paths, nbest_row)

log = logging.getLogger(__name__)


def interpolate(graph, ngram, nn, weight: float):
    """``graph - ngram + weight * nn + (1 - weight) * ngram`` (works on floats and arrays)."""
    return graph - ngram + weight * nn + (1.0 - weight) * ngram


def ngram_costs(ngram_lm, hyps) -> np.ndarray:
    """Old LM cost of each hypothesis (``<s> words </s>``, nats) from an :class:`~asr_lm_quant.ngram.ArpaLM`;
    zeros without one (a recogniser with no LM of its own: the NN LM is then added, nothing removed)."""
    if ngram_lm is None:
        return np.zeros(len(hyps))
    return np.array([ngram_lm.sentence_cost(h.words if isinstance(h, NbestHyp) else h) for h in hyps],
                    dtype=np.float64)


@dataclass
class ScoredNbest:
    """Hypotheses with their old n-gram and NN costs (arrays parallel to ``hyps``)."""
    hyps: list
    ngram: np.ndarray
    nn: np.ndarray
    lattices: list | None = None  # linear CompactLattice per hypothesis (alignment kept), or None

    def new_graph(self, weight: float) -> np.ndarray:
        graph = np.array([h.lm_cost for h in self.hyps], dtype=np.float64)
        return interpolate(graph, self.ngram, self.nn, weight)


def score_hypotheses(hyps, scorer, ngram_lm, lattices=None, oov_penalty: float = 0.0) -> ScoredNbest:
    """NN costs (``scorer``: :class:`~asr_lm_quant.rescore.nnscore.NNScorer`) and old n-gram costs.

    ``oov_penalty``: nats added to the NN cost per word outside its vocabulary (scored as ``<unk>``, which
    an LM trained with ``<unk>`` otherwise often prefers to the right in-vocabulary word)."""
    hyps = list(hyps)
    nn = scorer.costs([h.words for h in hyps])
    if oov_penalty:
        vocab = scorer.vocab
        nn = nn + oov_penalty * np.array([sum(w not in vocab for w in h.words) for h in hyps], dtype=np.float64)
    return ScoredNbest(hyps, ngram_costs(ngram_lm, hyps), nn, lattices)


def rescore_hypotheses(hyps, scorer, ngram_lm, weights) -> dict[float, list[NbestHyp]]:
    """For each weight, the hypotheses with ``lm_cost`` replaced by the interpolated graph cost."""
    scored = score_hypotheses(hyps, scorer, ngram_lm)
    out = {}
    for w in weights:
        g = scored.new_graph(w)
        out[w] = [NbestHyp(h.utterance, h.rank, h.words, h.acoustic_cost, float(x))
                  for h, x in zip(scored.hyps, g)]
    return out


# --- pruning before NN scoring --------------------------------------------------------------------------
@dataclass
class PruneSweep:
    """The settings the rescored lists will be scored at, so hypotheses that cannot be the best at any of
    them need no NN cost: interpolation ``weights``, LM weights ``lmwts`` (Kaldi's LMWT: the best path
    minimises ``graph + acoustic / LMWT + wip * words``) and word insertion penalties ``wips``.

    ``references`` hypotheses of each utterance (its first-pass best ranks) are scored first. Every other
    hypothesis ``h`` has a lower bound on its NN cost: the words it shares from the start with a reference
    cost exactly what they cost in that reference (the LM sees the same history), each of the rest at least
    the scorer's ``word_cost_floor()`` (0 for a normalised LM; a bound from the weights without the
    normaliser, where a word's cost is minus its logit and can be negative). It
    is dropped when, at every setting, even that bound leaves it behind the best reference: then it is the
    1-best at no setting of the sweep, and neither is anything else it would have beaten, so the 1-best at
    every setting is the one full scoring gives. ``beam``: also drop hypotheses whose first-pass cost is
    more than ``beam`` behind the utterance's best at every setting (a heuristic: this can change the
    1-best). Dropped hypotheses are left out of the outputs."""
    weights: list
    lmwts: list
    wips: list = field(default_factory=lambda: [0.0, 0.5, 1.0])
    references: int = 1
    beam: float | None = None

    def settings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weight, 1 / lmwt, wip) of every setting, as three parallel arrays."""
        grid = np.array([(w, 1.0 / m, p) for w in self.weights for m in self.lmwts for p in self.wips],
                        dtype=np.float64).reshape(-1, 3)
        return grid[:, 0], grid[:, 1], grid[:, 2]


def _shared_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def score_pruned(hyps, scorer, ngram_lm, sweep: PruneSweep, lattices=None, oov_penalty: float = 0.0):
    """:func:`score_hypotheses` of the hypotheses that can be the best at some setting of ``sweep`` (see
    :class:`PruneSweep`): ``(ScoredNbest of those kept, NN positions of the reference pass)``."""
    hyps = list(hyps)
    ngram = ngram_costs(ngram_lm, hyps)
    w, inv_lmwt, wip = sweep.settings()
    vocab = scorer.vocab
    oov = np.array([sum(x not in vocab for x in h.words) for h in hyps], dtype=np.float64)
    by_utt: dict[str, list[int]] = {}
    for i, h in enumerate(hyps):
        by_utt.setdefault(h.utterance, []).append(i)
    refs = [i for idx in by_utt.values() for i in sorted(idx, key=lambda i: hyps[i].rank)[:sweep.references]]
    floor = scorer.word_cost_floor()
    per_word = scorer.word_costs([hyps[i].words for i in refs]) if refs else []
    ref_positions = scorer.stats.positions if refs else 0
    ref_set = set(refs)
    ref_of = {i: c for i, c in zip(refs, per_word)}
    keep = np.zeros(len(hyps), dtype=bool)
    for idx in by_utt.values():
        r_idx = [i for i in idx if i in ref_set]
        keep[r_idx] = True

        def first_pass(i, nn):  # score of hypothesis i at every setting, given an NN cost (or its bound)
            h = hyps[i]
            return (h.acoustic_cost * inv_lmwt + h.lm_cost - w * ngram[i] + w * nn
                    + wip * len(h.words))

        best = np.min([first_pass(i, float(np.sum(ref_of[i])) + oov_penalty * oov[i]) for i in r_idx], axis=0)
        margin = 1e-6 * (np.abs(best) + 1.0)  # the bound's sum and the final costs may differ in the last bits
        if sweep.beam is not None:
            zero = np.min([first_pass(i, ngram[i]) for i in idx], axis=0)  # the first pass: the old LM's costs
        for i in idx:
            if i in ref_set:
                continue
            words = hyps[i].words
            bound = max(float(np.sum(ref_of[r][:k])) + floor * (len(words) + 1 - k)
                        for r in r_idx for k in [_shared_prefix(words, hyps[r].words)])
            can_win = first_pass(i, bound + oov_penalty * oov[i]) <= best + margin
            if sweep.beam is not None:
                can_win &= first_pass(i, ngram[i]) <= zero + sweep.beam
            keep[i] = bool(can_win.any())
    kept = np.flatnonzero(keep)
    sub = [hyps[i] for i in kept]
    nn = scorer.costs([h.words for h in sub])
    if oov_penalty:
        nn = nn + oov_penalty * oov[kept]
    return ScoredNbest(sub, ngram[kept], nn, [lattices[i] for i in kept] if lattices else None), ref_positions


# --- hypotheses from lattices -----------------------------------------------------------------------------
def _path_linear_lattice(lat: Lattice, path) -> Lattice:
    """The path as a linear CompactLattice: one arc per word with its frames, costs on the final weight.
    Frames of epsilon arcs go to the word before them (to the first word when none precedes)."""
    words, alis, pending = [], [], []
    for i in path.arcs:
        ali = list(lat.arc_alignment(i)) if lat.compact else ([int(lat.ilabel[i])] if lat.ilabel[i] else [])
        w = int(lat.olabel[i])
        if w:
            words.append(w)
            alis.append(pending + ali)
            pending = []
        elif alis:
            alis[-1].extend(ali)
        else:
            pending.extend(ali)
    final_ali = pending + (list(lat.final_alignment(path.final_state)) if lat.compact else [])
    return linear_lattice(words, path.graph_cost, path.acoustic_cost, word_alignments=alis,
                          final_alignment=final_ali)


def lattice_hypotheses(key: str, lat: Lattice, n: int, acoustic_scale: float, symbols):
    """``lattice-to-nbest --acoustic-scale=S --n=N`` for one utterance: ``(hyps, linear lattices)``."""
    hyps, lats = [], []
    for r, p in enumerate(nbest_paths(lat, n, acoustic_scale), 1):
        hyps.append(NbestHyp(key, r, symbols.words(p.words, key=nbest_key(key, r)), p.acoustic_cost,
                             p.graph_cost))
        lats.append(_path_linear_lattice(lat, p))
    return hyps, lats


# --- a whole job --------------------------------------------------------------------------------------------
TABLES = ("words", "acwt", "lmwt.withlm", "lmwt.nolm", "lmwt.lmonly", "lmwt.nn")


@dataclass
class _Outputs:
    """The outputs of one job, written as the chunks come: each file goes to a temporary name beside its
    path when the job starts (so an unwritable output stops the job before any scoring) and is renamed
    onto its path only when the whole job succeeds."""
    weights: list
    symbols: object
    lattices: dict = field(default_factory=dict)  # weight -> wspecifier
    nbest: dict = field(default_factory=dict)     # weight -> .tsv/.jsonl path
    tables: dict = field(default_factory=dict)    # weight -> Kaldi n-best tables dir
    overwrite: bool = False
    references: dict = field(default_factory=dict)  # utt -> words, carried into JSON-lines n-best outputs
    writers: dict = field(default_factory=dict)

    def open(self):
        self._stack = contextlib.ExitStack()
        try:
            self.writers = {w: LatticeWriter(spec, overwrite=self.overwrite) for w, spec in self.lattices.items()}
            self._nbest = {}
            for w, path in self.nbest.items():
                f = self._stack.enter_context(atomic_open(path, overwrite=self.overwrite))
                if not is_jsonl(path):
                    f.write("\t".join(TSV_HEADER) + "\n")
                self._nbest[w] = f
            self._tables = {}
            for w, d in self.tables.items():
                d = Path(d)
                names = TABLES + (f"lmwt.interp.{w:g}",)
                self._tables[w] = {n: self._stack.enter_context(atomic_open(d / n, overwrite=self.overwrite))
                                   for n in names}
        except BaseException:
            self.close(ok=False)
            raise

    def add(self, scored: ScoredNbest):
        for w in self.weights:
            g = scored.new_graph(w)
            new = [NbestHyp(h.utterance, h.rank, h.words, h.acoustic_cost, float(x))
                   for h, x in zip(scored.hyps, g)]
            if w in self._nbest:
                jsonl = is_jsonl(self.nbest[w])
                refs = self._first_row_references(new) if jsonl else [None] * len(new)
                self._nbest[w].write("".join(nbest_row(h, jsonl, r) for h, r in zip(new, refs)))
            if w in self._tables:
                self._write_tables(self._tables[w], scored, new, w)
            if w in self.writers:
                by_utt: dict[str, list] = {}
                for h, x, i in zip(new, g, range(len(new))):
                    base = scored.lattices[i] if scored.lattices else None
                    lin = (_with_cost(base, x, h.acoustic_cost) if base is not None else
                           linear_lattice(self.symbols.ids(h.words, key=nbest_key(h.utterance, h.rank)),
                                          x, h.acoustic_cost))
                    by_utt.setdefault(h.utterance, []).append(lin)
                for utt, lats in by_utt.items():
                    self.writers[w].write(utt, union_lattices(lats))

    def _first_row_references(self, hyps) -> list:
        """Each row's reference to write: the utterance's on its first row (a chunk holds whole utterances),
        None elsewhere and where there is none."""
        out, prev = [], None
        for h in hyps:
            out.append(self.references.get(h.utterance) if h.utterance != prev else None)
            prev = h.utterance
        return out

    def _write_tables(self, files, scored, new, w):
        for h, o, c, r in zip(scored.hyps, scored.ngram, scored.nn, new):
            k = nbest_key(h.utterance, h.rank)
            files["words"].write(int_vector_line(k, self.symbols.ids(h.words, key=k)))
            for name, v in (("acwt", h.acoustic_cost), ("lmwt.withlm", h.lm_cost), ("lmwt.nolm", h.lm_cost - o),
                            ("lmwt.lmonly", o), ("lmwt.nn", c), (f"lmwt.interp.{w:g}", r.lm_cost)):
                files[name].write(float_line(k, v))

    def close(self, ok: bool):
        err = None
        for wr in self.writers.values():
            try:
                wr.close(ok=ok and err is None)
            except Exception as e:  # a failed output pipe: the other outputs are not kept either
                err = err or e
        self.writers = {}
        if ok and err is None:
            self._stack.close()
        else:
            self._stack.__exit__(RuntimeError, RuntimeError("rescoring failed"), None)
        if err is not None:
            raise err


def _with_cost(lin: Lattice, graph: float, acoustic: float) -> Lattice:
    """A linear lattice from :func:`_path_linear_lattice` with its final (graph, acoustic) replaced."""
    fg, fa = lin.final_graph.copy(), lin.final_acoustic.copy()
    f = np.flatnonzero(np.isfinite(fg))[0]
    fg[f], fa[f] = graph, acoustic
    return lin.replace(final_graph=fg, final_acoustic=fa)


def _chunks(items, max_hyps: int):
    """Group per-utterance ``(hyps, lattices)`` so a chunk holds about ``max_hyps`` hypotheses."""
    hyps, lats, n = [], [], 0
    for h, lt in items:
        hyps.extend(h)
        lats.extend(lt if lt is not None else [None] * len(h))
        n += len(h)
        if n >= max_hyps:
            yield hyps, lats
            hyps, lats, n = [], [], 0
    if hyps:
        yield hyps, lats


def _items(lattices, hyps, hyp_groups, n, acoustic_scale, symbols):
    """Per-utterance ``(hyps, lattices or None)`` of a job's one input (see :func:`rescore_nbest_job`)."""
    if lattices is not None:
        for key, lat in read_lattices(lattices, kind="compact"):
            h, lts = lattice_hypotheses(key, lat, n, acoustic_scale, symbols)
            if not h:
                log.warning("%s: no path through the lattice; utterance skipped", key)
                continue
            yield h, lts
    elif hyp_groups is not None:
        for group in hyp_groups:
            yield group, None
    else:
        group: list = []
        for h in hyps:
            if group and h.utterance != group[0].utterance:
                yield group, None
                group = []
            group.append(h)
        if group:
            yield group, None


def rescore_nbest_job(*, scorer, ngram_lm, symbols, weights, lattices: str | None = None,
                      hyps=None, hyp_groups=None, n: int = 20, acoustic_scale: float = 0.1, out_lattices=None,
                      out_nbest=None, out_tables=None, chunk_hyps: int = 4000, overwrite: bool = True,
                      oov_penalty: float = 0.0, prune: PruneSweep | None = None,
                      references: dict | None = None) -> dict:
    """Rescore one job: lattices from the rspecifier ``lattices`` (converted to N-best as
    ``lattice-to-nbest``), ready-made ``hyps`` (NbestHyp, grouped by utterance) or ``hyp_groups`` (an
    iterable of per-utterance lists, e.g. :func:`~asr_lm_quant.nbest.read.iter_groups`: streamed).

    ``out_lattices`` / ``out_nbest`` / ``out_tables``: dicts weight -> wspecifier / file / dir.
    Hypotheses of many utterances are scored together (``chunk_hyps`` at a time), so the NN batches
    stay full while memory stays bounded: outputs are written chunk by chunk. Existing outputs are replaced
    only with ``overwrite``. ``prune``: score only the hypotheses that can be the best at some setting of
    that sweep (:class:`PruneSweep`); the others are left out of the outputs. ``references`` (``{utt: words}``,
    filled at the latest when an utterance's group is yielded, as :func:`~asr_lm_quant.nbest.read.iter_groups`
    does): written into JSON-lines n-best outputs, so that the next step finds them. Returns a summary dict.
    """
    if sum(x is not None for x in (lattices, hyps, hyp_groups)) != 1:
        raise ValueError("give exactly one of lattices, hyps and hyp_groups")
    weights = [float(w) for w in weights]
    for w in weights:
        if not 0.0 <= w <= 1.0:
            raise InputError(None, f"interpolation weight {w} is outside [0, 1]")
    outs = _Outputs(weights, symbols, dict(out_lattices or {}), dict(out_nbest or {}), dict(out_tables or {}),
                    overwrite=overwrite, references=references if references is not None else {})

    summary = {"utterances": 0, "hypotheses": 0, "words": 0, "oov": 0, "ngram_oov": 0, "nn_seconds": 0.0,
               "nn_positions": 0, "weights": weights}
    if prune is not None:
        summary["pruned"] = 0
    outs.open()
    ok = False
    try:
        for chunk, lats in _chunks(_items(lattices, hyps, hyp_groups, n, acoustic_scale, symbols), chunk_hyps):
            lats = lats if any(x is not None for x in lats) else None
            if prune is None:
                scored = score_hypotheses(chunk, scorer, ngram_lm, lats, oov_penalty)
            else:
                t = time.perf_counter()
                scored, ref_positions = score_pruned(chunk, scorer, ngram_lm, prune, lats, oov_penalty)
                summary["pruned"] += len(chunk) - len(scored.hyps)
                summary["nn_positions"] += ref_positions
                scorer.stats.seconds = time.perf_counter() - t  # both passes
            summary["nn_positions"] += scorer.stats.positions
            outs.add(scored)
            summary["utterances"] += len({h.utterance for h in chunk})
            summary["hypotheses"] += len(chunk)
            summary["words"] += scorer.stats.words
            summary["oov"] += scorer.stats.oov
            if ngram_lm is not None:
                summary["ngram_oov"] += int(sum(bool(ngram_lm.is_oov(w)) for h in chunk for w in h.words))
            summary["nn_seconds"] += scorer.stats.seconds
        ok = True
    finally:
        outs.close(ok)
    # Words outside an LM with <unk> cost what the decoder gave them (it scored them as <unk> too); only an
    # LM without <unk> gives them a cost the decoder did not use.
    if summary["ngram_oov"] and not getattr(ngram_lm, "has_unk", True):
        log.warning("%d hypothesis words are not in the old LM %s: its cost for them (and so its removal) "
                    "is not the decoder's", summary["ngram_oov"], getattr(ngram_lm, "path", ""))
    return summary
