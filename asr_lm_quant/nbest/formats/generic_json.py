"""**generic-json**: a ``.json`` file holding one list of items ``{"id", "hypotheses": [...], "scores": [...],
"reference"}`` (see :func:`read_generic_json`)."""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.errors import InputError, read_json_file
from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.nbest.common import cost_from_log_prob, good_id, is_number
from asr_lm_quant.nbest.formats import Format
from asr_lm_quant.textio import split_fields

GENERIC_KEYS = {"id": ("id", "utterance", "utt"), "hypotheses": ("hypotheses", "input", "nbest"),
                "scores": ("scores", "score"), "lm_scores": ("lm_scores", "lm_score"),
                "reference": ("reference", "output", "ref")}


def _field(item, name):
    for k in GENERIC_KEYS[name]:
        if k in item:
            return item[k]
    return None


def _numbers(path, where, utt, values, name, count):
    if values is None:
        return [0.0] * count
    if not isinstance(values, list) or len(values) != count or not all(map(is_number, values)):
        raise InputError(path, f"{where}: {name} must be {count} finite numbers, one per hypothesis", key=utt)
    return values


def positional_id(n: int, count: int) -> str:
    """The id of item ``n`` (from 0) of a list of ``count`` items that have none: ``utt`` + ``n`` zero-padded to
    the width of ``count``."""
    return f"utt{n:0{len(str(count))}d}"


def _has_id(item) -> bool:
    return any(k in item for k in GENERIC_KEYS["id"])


def _positional(path, items):
    """Positional ids when no item has an id, None when all have one; an error naming the first item that
    breaks the pattern of item 0 when the list mixes both."""
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(path, f"item {n} is not an object")
    first = _has_id(items[0])
    for n, item in enumerate(items):
        if _has_id(item) != first:
            state = "has no id (key id, utterance or utt) but item 0 has one" if first else \
                "has an id but item 0 has none"
            raise InputError(path, f"item {n} {state}: give every item an id, or none (positional ids)")
    return None if first else [positional_id(n, len(items)) for n in range(len(items))]


def read_generic_json(path):
    """``(groups, references)`` of a generic n-best JSON file: a list of items
    ``{"id": "utt1", "hypotheses": ["best text", "second", ...], "scores": [-3.2, -4.1, ...],
    "reference": "the reference"}`` (also spelt ``utterance``/``utt``, ``input``/``nbest``, ``score``,
    ``output``/``ref``, the shape several published n-best corpora use). ``scores`` are the recogniser's
    log-probabilities (natural log, higher is better): they become acoustic costs (:func:`cost_from_log_prob`)
    with no LM cost; without scores the order of the list is the ranking (equal costs). Optional
    ``"lm_scores"``: the first pass's LM log-probabilities (natural log), kept apart so that the LM scale can be
    tuned (they become LM costs, and ``scores`` then holds the acoustic part only). ``references`` maps ids to
    reference texts where items have them.

    Items may all leave out the id: each then gets a positional one, ``utt`` and its 0-based index in the list
    zero-padded to the width of the item count (``utt0007`` in a list of 1000 to 9999 items), so the ids of a
    file stay the same from run to run and sort in file order. A list where some items have ids and some do
    not is an error (the positions would not say which utterance is which)."""
    path = Path(path)
    items = read_json_file(path, "n-best file")
    if not isinstance(items, list) or not items:
        raise InputError(path, "expected a non-empty JSON list of n-best items")
    groups, refs, seen = [], {}, set()
    positional = _positional(path, items)
    for n, item in enumerate(items):
        where = f"item {n}"
        utt = positional[n] if positional else _field(item, "id")
        hyps = _field(item, "hypotheses")
        ref = _field(item, "reference")
        if not good_id(utt):
            raise InputError(path, f"{where}: needs an id without spaces (key id, utterance or utt)")
        if utt in seen:
            raise InputError(path, f"{where}: id appears twice", key=utt)
        seen.add(utt)
        if not isinstance(hyps, list) or not hyps or not all(isinstance(h, str) for h in hyps):
            raise InputError(path, f"{where}: hypotheses must be a non-empty list of strings", key=utt)
        scores = _numbers(path, where, utt, _field(item, "scores"), "scores", len(hyps))
        lm_scores = _numbers(path, where, utt, _field(item, "lm_scores"), "lm_scores", len(hyps))
        if ref is not None:
            if not isinstance(ref, str):
                raise InputError(path, f"{where}: the reference must be a string", key=utt)
            refs[utt] = split_fields(ref)
        groups.append([NbestHyp(utt, r, split_fields(h), cost_from_log_prob(sc), cost_from_log_prob(lm))
                       for r, (h, sc, lm) in enumerate(zip(hyps, scores, lm_scores), 1)])
    return groups, refs


def read(path, references):
    groups, found = read_generic_json(path)
    references.update(found)
    yield from groups


FORMAT = Format(name="generic-json", help="a JSON list of {id, hypotheses, scores, reference}", read=read,
                references=True,
                detect=lambda item, is_line: not is_line and bool(set(item) & set(GENERIC_KEYS["hypotheses"])))
