"""**whisper-hf**: defined here (neither Hugging Face nor openai-whisper writes n-best lists to files): JSON
lines, or a ``.json`` list, one item per utterance::

    {"id": "utt1", "sequences": [" I think that.", " I think, that."],
     "sequences_scores": [-0.213, -0.348], "length_penalty": 1.0, "reference": "i think that"}

``sequences`` are the hypotheses best first, as ``processor.batch_decode(out.sequences,
skip_special_tokens=True)`` gives them for ``out = model.generate(..., num_beams=K, num_return_sequences=K,
output_scores=True, return_dict_in_generate=True)``; ``sequences_scores`` is
``out.sequences_scores.tolist()``, i.e. beam search's ``sum_logprobs / generated_len ** length_penalty``:
with the default ``length_penalty`` 1.0 a **per-token average**, with 0.0 the **total** log-probability
(``length_penalty`` in the item, default 1.0; other values are neither and are refused). Instead of
``sequences_scores`` an item may carry openai-whisper's ``avg_logprobs`` (per-token averages, as its
``DecodingResult.avg_logprob``) or ``sum_logprobs`` (totals). All items of a file hold the same kind, and
``decide-nbest`` requires ``--per-token-costs acoustic`` (or ``both``) exactly when they are averages.
``reference`` is optional.
"""

from __future__ import annotations

import json

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.nbest.common import (PER_TOKEN, TOTAL, cost_from_log_prob, first_item, good_id, is_number,
                                       item_error, json_items)
from asr_lm_quant.nbest.formats import Format
from asr_lm_quant.textio import split_fields

_SCORES = ("sequences_scores", "avg_logprobs", "sum_logprobs")


def _scores(path, n, is_line, item):
    """``((name, scores), kind)`` of one item."""
    if not isinstance(item, dict):
        raise item_error(path, n, is_line, "expected a JSON object")
    present = [k for k in _SCORES if k in item]
    if len(present) != 1:
        raise item_error(path, n, is_line, f"needs exactly one of {', '.join(_SCORES)} (has "
                                           f"{', '.join(present) or 'none'})", key=item.get("id"))
    name = present[0]
    if name == "sequences_scores":
        penalty = item.get("length_penalty", 1.0)
        if not is_number(penalty) or penalty not in (0, 1):
            raise item_error(path, n, is_line, f"length_penalty {json.dumps(penalty)}: sequences_scores are "
                                               "per-token averages with 1, totals with 0; other values are "
                                               "neither (generate again with length_penalty 0 or 1)",
                             key=item.get("id"))
        kind = PER_TOKEN if penalty == 1 else TOTAL
    else:
        kind = PER_TOKEN if name == "avg_logprobs" else TOTAL
    return (name, item[name]), kind


def score_kind(path) -> str:
    """What the file's scores are (its first item says): per-token averages or totals."""
    return _scores(path, *first_item(path))[1]


def read(path, references: dict | None = None):
    """Per-utterance hypotheses of a whisper-hf file (see the module docstring)."""
    seen: set = set()
    first_kind = None
    for n, is_line, item in json_items(path):
        (name, scores), kind = _scores(path, n, is_line, item)
        utt, seqs, ref = item.get("id"), item.get("sequences"), item.get("reference")
        if not good_id(utt):
            raise item_error(path, n, is_line, "needs an id (a string without spaces)")
        if utt in seen:
            raise item_error(path, n, is_line, "id appears twice", key=utt)
        seen.add(utt)
        if not isinstance(seqs, list) or not seqs or not all(isinstance(s, str) for s in seqs):
            raise item_error(path, n, is_line, "sequences must be a non-empty list of strings", key=utt)
        if not isinstance(scores, list) or len(scores) != len(seqs):
            raise item_error(path, n, is_line, f"{name} must be a list of {len(seqs)} numbers, one per sequence",
                             key=utt)
        for i, s in enumerate(scores):
            if not is_number(s):
                raise item_error(path, n, is_line, f"{name}[{i}] is not a finite number: {json.dumps(s)}",
                                 key=utt)
        if first_kind is None:
            first_kind = kind
        elif kind != first_kind:
            raise item_error(path, n, is_line, f"{kind} scores after {first_kind} ones: one file, one kind",
                             key=utt)
        if ref is not None:
            if not isinstance(ref, str):
                raise item_error(path, n, is_line, "the reference must be a string", key=utt)
            if references is not None:
                references[utt] = split_fields(ref)
        yield [NbestHyp(utt, r, split_fields(text), cost_from_log_prob(s), 0.0)
               for r, (text, s) in enumerate(zip(seqs, scores), 1)]
    if not seen:
        raise InputError(path, "no n-best items in the file")


FORMAT = Format(name="whisper-hf", help="JSON {id, sequences, sequences_scores}", read=read, references=True,
                detect=lambda item, is_line: "sequences" in item, score_kind=score_kind)
