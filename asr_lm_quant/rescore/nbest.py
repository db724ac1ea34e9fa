"""N-best rescoring: replace the old n-gram LM in each hypothesis' graph cost by an NN/n-gram interpolation.

For a hypothesis with graph cost ``g`` (old LM + transition + pronunciation + silence), old n-gram cost ``o``
(from its ARPA file, ``<s>``/``</s>`` included, nats) and NN cost ``c``:

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

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.archive import LatticeWriter, read_lattices
from asr_lm_quant.kaldi.lattice import Lattice, linear_lattice, union_lattices
from asr_lm_quant.kaldi.nbest import (NbestHyp, nbest_key, nbest_paths, write_float_table,
                                      write_int_vector_table, write_nbest)

log = logging.getLogger(__name__)


def interpolate(graph, ngram, nn, weight: float):
    """``graph - ngram + weight * nn + (1 - weight) * ngram`` (works on floats and arrays)."""
    return graph - ngram + weight * nn + (1.0 - weight) * ngram


def ngram_costs(ngram_lm, hyps) -> np.ndarray:
    """Old LM cost of each hypothesis (``<s> words </s>``, nats) from an :class:`~asr_lm_quant.ngram.ArpaLM`."""
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


def score_hypotheses(hyps, scorer, ngram_lm, lattices=None) -> ScoredNbest:
    """NN costs (``scorer``: :class:`~asr_lm_quant.rescore.nnscore.NNScorer`) and old n-gram costs."""
    hyps = list(hyps)
    return ScoredNbest(hyps, ngram_costs(ngram_lm, hyps), scorer.costs([h.words for h in hyps]), lattices)


def rescore_hypotheses(hyps, scorer, ngram_lm, weights) -> dict[float, list[NbestHyp]]:
    """For each weight, the hypotheses with ``lm_cost`` replaced by the interpolated graph cost."""
    scored = score_hypotheses(hyps, scorer, ngram_lm)
    out = {}
    for w in weights:
        g = scored.new_graph(w)
        out[w] = [NbestHyp(h.utterance, h.rank, h.words, h.acoustic_cost, float(x))
                  for h, x in zip(scored.hyps, g)]
    return out


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
@dataclass
class _Outputs:
    weights: list
    symbols: object
    lattices: dict = field(default_factory=dict)  # weight -> wspecifier
    nbest: dict = field(default_factory=dict)     # weight -> .tsv/.jsonl path
    tables: dict = field(default_factory=dict)    # weight -> Kaldi n-best tables dir
    writers: dict = field(default_factory=dict)
    rows: dict = field(default_factory=dict)

    def open(self):
        self.writers = {w: LatticeWriter(spec) for w, spec in self.lattices.items()}
        self.rows = {w: [] for w in self.weights}
        self.common = {k: [] for k in ("words", "acwt", "withlm", "nolm", "lmonly", "nn")}

    def add(self, scored: ScoredNbest):
        for w in self.weights:
            g = scored.new_graph(w)
            new = [NbestHyp(h.utterance, h.rank, h.words, h.acoustic_cost, float(x))
                   for h, x in zip(scored.hyps, g)]
            self.rows[w].extend(new)
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
        if self.tables:
            for h, o, c in zip(scored.hyps, scored.ngram, scored.nn):
                k = nbest_key(h.utterance, h.rank)
                self.common["words"].append((k, self.symbols.ids(h.words, key=k)))
                self.common["acwt"].append((k, h.acoustic_cost))
                self.common["withlm"].append((k, h.lm_cost))
                self.common["nolm"].append((k, h.lm_cost - o))
                self.common["lmonly"].append((k, o))
                self.common["nn"].append((k, c))

    def close(self, ok: bool):
        for wr in self.writers.values():
            wr.close(ok=ok)
        if not ok:
            return
        for w, path in self.nbest.items():
            write_nbest(path, self.rows[w])
        for w, d in self.tables.items():
            d = Path(d)
            d.mkdir(parents=True, exist_ok=True)
            write_int_vector_table(d / "words", self.common["words"])
            for name, rows in (("acwt", "acwt"), ("lmwt.withlm", "withlm"), ("lmwt.nolm", "nolm"),
                               ("lmwt.lmonly", "lmonly"), ("lmwt.nn", "nn")):
                write_float_table(d / name, self.common[rows])
            write_float_table(d / f"lmwt.interp.{w:g}",
                              [(nbest_key(h.utterance, h.rank), h.lm_cost) for h in self.rows[w]])


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


def rescore_nbest_job(*, scorer, ngram_lm, symbols, weights, lattices: str | None = None,
                      hyps=None, n: int = 20, acoustic_scale: float = 0.1, out_lattices=None,
                      out_nbest=None, out_tables=None, chunk_hyps: int = 4000) -> dict:
    """Rescore one job: lattices from the rspecifier ``lattices`` (converted to N-best as
    ``lattice-to-nbest``) or ready-made ``hyps`` (NbestHyp, grouped by utterance).

    ``out_lattices`` / ``out_nbest`` / ``out_tables``: dicts weight -> wspecifier / file / dir.
    Hypotheses of many utterances are scored together (``chunk_hyps`` at a time), so the NN batches
    stay full while memory stays bounded. Returns a summary dict.
    """
    if (lattices is None) == (hyps is None):
        raise ValueError("give exactly one of lattices and hyps")
    weights = [float(w) for w in weights]
    for w in weights:
        if not 0.0 <= w <= 1.0:
            raise InputError(None, f"interpolation weight {w} is outside [0, 1]")
    outs = _Outputs(weights, symbols, dict(out_lattices or {}), dict(out_nbest or {}), dict(out_tables or {}))

    def items():
        if lattices is not None:
            for key, lat in read_lattices(lattices, kind="compact"):
                h, lts = lattice_hypotheses(key, lat, n, acoustic_scale, symbols)
                if not h:
                    log.warning("%s: no path through the lattice; utterance skipped", key)
                    continue
                yield h, lts
        else:
            group: list = []
            for h in hyps:
                if group and h.utterance != group[0].utterance:
                    yield group, None
                    group = []
                group.append(h)
            if group:
                yield group, None

    summary = {"utterances": 0, "hypotheses": 0, "words": 0, "oov": 0, "ngram_oov": 0, "nn_seconds": 0.0,
               "weights": weights}
    outs.open()
    ok = False
    try:
        for chunk, lats in _chunks(items(), chunk_hyps):
            scored = score_hypotheses(chunk, scorer, ngram_lm,
                                      lats if any(x is not None for x in lats) else None)
            outs.add(scored)
            summary["utterances"] += len({h.utterance for h in chunk})
            summary["hypotheses"] += len(chunk)
            summary["words"] += scorer.stats.words
            summary["oov"] += scorer.stats.oov
            summary["ngram_oov"] += sum(ngram_lm.is_oov(w) for h in chunk for w in h.words)
            summary["nn_seconds"] += scorer.stats.seconds
        ok = True
    finally:
        outs.close(ok)
    if summary["ngram_oov"]:
        log.warning("%d hypothesis words are not in the old LM %s: its cost for them (and so its removal) "
                    "is not the decoder's", summary["ngram_oov"], getattr(ngram_lm, "path", ""))
    return summary
