"""The toolkit from Python: load an LM, score sentences, rescore n-best lists, quantize.

The same library calls as the command line (``asr-lm-quant ppl``/``rescore-nbest``/``quantize``), with the
same checks and errors (:class:`~asr_lm_quant.errors.InputError` names the file and what is wrong)::

    from asr_lm_quant import api
    lm = api.load_lm("exp/lm")                         # plain or packed; packed stays packed
    lm.score(["i think that", "i think zebra"])         # costs in nats (negated natural log)
    best = api.rescore("hyps.tsv", lm, old_lm="first_pass.arpa", weight=0.5)
    api.quantize("exp/lm", "exp/lm_4bit", method="ptq", bits=4)
"""

from __future__ import annotations

import os

from dataclasses import dataclass

import numpy as np

from asr_lm_quant.textio import split_fields


@dataclass
class LM:
    """A loaded LM: its model, vocabulary and a scorer (bf16 products with ``bf16=True``)."""
    model: object
    vocab: object
    scorer: object

    def score(self, sentences) -> np.ndarray:
        """Cost of each sentence (a string or a list of words): ``-log p(words, end of sentence | <s>)``."""
        return self.scorer.costs([split_fields(s) if isinstance(s, str) else list(s) for s in sentences])

    def word_costs(self, sentences) -> list[np.ndarray]:
        """Per sentence, the cost of each word and, last, of the end of sentence."""
        return self.scorer.word_costs([split_fields(s) if isinstance(s, str) else list(s) for s in sentences])


def load_lm(path, *, device: str = "cpu", bf16: bool = False, dequantize: bool = False) -> LM:
    """A model directory (``train``'s or ``quantize``'s output, or an ``import-kaldi`` one, Transformer or
    LSTM). A packed model is kept packed unless ``dequantize``."""
    from asr_lm_quant.lm.device import checked_device
    from asr_lm_quant.quant.packed import load_any_lm, load_lm_for_inference
    from asr_lm_quant.rescore.nnscore import make_scorer

    checked_device(device)
    model, vocab = (load_any_lm if dequantize else load_lm_for_inference)(path, device)
    return LM(model, vocab, make_scorer(model, vocab, device=device, bf16=bf16))


def rescore(nbest, lm: LM, *, old_lm=None, weight: float = 0.5, oov_penalty: float = 0.0) -> list:
    """Rescored hypotheses (``NbestHyp`` with ``lm_cost`` = graph - old + w * nn + (1 - w) * old; without
    ``old_lm``, lm_cost + w * nn). ``nbest``: a path to an n-best file (TSV, JSON lines or the generic JSON)
    or a list of ``NbestHyp``; ``old_lm``: the recogniser's LM as ``--old-lm`` takes it (ARPA file, G.fst,
    G.carpa or Kaldi lang dir; see :mod:`asr_lm_quant.ngram.old_lm`) or an LM object already open."""
    from asr_lm_quant.errors import InputError
    from asr_lm_quant.kaldi.nbest import NbestHyp
    from asr_lm_quant.nbest.read import read_nbest
    from asr_lm_quant.ngram.old_lm import open_old_lm
    from asr_lm_quant.rescore.nbest import score_hypotheses

    if not 0.0 <= weight <= 1.0:
        raise InputError(None, f"weight {weight} is outside [0, 1]")
    hyps = read_nbest(nbest) if not isinstance(nbest, (list, tuple)) else list(nbest)
    if isinstance(old_lm, (str, os.PathLike)):
        old_lm = open_old_lm(old_lm)
    scored = score_hypotheses(hyps, lm.scorer, old_lm, oov_penalty=oov_penalty)
    return [NbestHyp(h.utterance, h.rank, h.words, h.acoustic_cost, float(g))
            for h, g in zip(scored.hyps, scored.new_graph(weight))]


def best(hyps, *, lm_scale: float = 1.0, penalty: float = 0.0) -> dict:
    """Each utterance's 1-best under ``acoustic + lm_scale * lm + penalty * words`` (ties: the better rank), as
    ``decide-nbest`` picks it at that setting: ``{utterance: text}``, the words joined by single spaces."""
    from asr_lm_quant.kaldi.nbest import group_by_utterance
    from asr_lm_quant.rescore.decide import HypTable

    table = HypTable.from_groups(list(group_by_utterance(hyps).values()))
    return {table.utts[u]: " ".join(table.raw[r]) for u, r in enumerate(table.pick(lm_scale, penalty))}


def quantize(model_dir, out_dir, *, method: str, overwrite: bool = False, **options) -> dict:
    """Quantize like ``asr-lm-quant quantize`` (``options``: ``bits``, ``budget_bits``, ``train_text``,
    ``valid_text``, ``test_text``, ``bands``, ``finetune={...}`` ... as in the quantization configs); returns
    the results also written to ``out_dir/results.json``."""
    from asr_lm_quant.quant.pipeline import QuantConfig, run

    cfg = QuantConfig.from_dict({"model": str(model_dir), "out": str(out_dir), "method": method, **options})
    return run(cfg, overwrite=overwrite)
