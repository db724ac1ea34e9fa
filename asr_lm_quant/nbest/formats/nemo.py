"""**nemo**: the JSON-lines manifest NeMo's ``examples/asr/transcribe_speech.py`` writes (``.json`` suffix, one
object a line) when beam search keeps its n-best (``decoding.beam.return_best_hypothesis=false``): each input
manifest item (``audio_filepath``, ``duration``, ``text`` = the reference, ...) plus ``pred_text`` (the best
hypothesis) and ``beams``, a list of ``[text, score]`` pairs best first, ``score`` being the hypothesis'
total log-probability score (with an n-gram LM: acoustic + alpha * LM + beta * length). The utterance id is
the item's ``utt_id`` if it has one, else the audio file's name without directory and extension.
"""

from __future__ import annotations

import json
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.nbest.common import cost_from_log_prob, good_id, is_number, json_items, starts_with_list
from asr_lm_quant.nbest.formats import Format
from asr_lm_quant.textio import split_fields


def _utterance(path, n, item, seen):
    utt = item.get("utt_id")
    if utt is None and isinstance(item.get("audio_filepath"), str):
        utt = Path(item["audio_filepath"]).stem
    if not good_id(utt):
        raise InputError(path, "needs audio_filepath (or utt_id) to name the utterance, without spaces", line=n)
    if utt in seen:
        raise InputError(path, f"utterance id also on line {seen[utt]} (two audio files of the same name, "
                               "or segments of one file: give each item a utt_id)", line=n, key=utt)
    seen[utt] = n
    return utt


def _hyps(path, n, utt, beams):
    if beams is None:
        raise InputError(path, "no beams: decode with beam search and decoding.beam.return_best_hypothesis="
                               "false to keep the n-best", line=n, key=utt)
    if not isinstance(beams, list) or not beams:
        raise InputError(path, "beams must be a non-empty list of [text, score] pairs", line=n, key=utt)
    hyps = []
    for r, beam in enumerate(beams, 1):
        if not (isinstance(beam, list) and len(beam) == 2 and isinstance(beam[0], str)):
            raise InputError(path, f"beam {r} is not a [text, score] pair: {json.dumps(beam)[:80]}", line=n,
                             key=utt)
        if not is_number(beam[1]):
            raise InputError(path, f"beam {r}: score is not a finite number: {json.dumps(beam[1])}", line=n,
                             key=utt)
        hyps.append(NbestHyp(utt, r, split_fields(beam[0]), cost_from_log_prob(beam[1]), 0.0))
    return hyps


def read(path, references: dict | None = None):
    """Per-utterance hypotheses of a NeMo transcription manifest with ``beams`` (see the module docstring)."""
    if starts_with_list(path):
        raise InputError(path, "a NeMo manifest is JSON lines (one object a line), not a JSON list")
    seen: dict = {}
    for n, _, item in json_items(path):
        if not isinstance(item, dict):
            raise InputError(path, "expected a JSON object", line=n)
        utt = _utterance(path, n, item, seen)
        hyps = _hyps(path, n, utt, item.get("beams"))
        ref = item.get("text")
        if ref is not None:
            if not isinstance(ref, str):
                raise InputError(path, "text (the reference) must be a string", line=n, key=utt)
            if references is not None:
                references[utt] = split_fields(ref)
        yield hyps
    if not seen:
        raise InputError(path, "no n-best items in the file")


def detect(item, is_line) -> bool:
    return is_line and ("beams" in item or any(k.startswith("pred_text") for k in item))


FORMAT = Format(name="nemo", help="a transcription manifest with beams", read=read, references=True, detect=detect)
