"""Readers for the n-best lists other recognisers write, and the choice between them (``--nbest-format``).

Every reader yields per-utterance lists of :class:`~asr_lm_quant.kaldi.nbest.NbestHyp`, best rank first, and
collects the references a format carries. A recogniser's score for a hypothesis is a (weighted sum of)
natural-log probabilities, higher is better; :func:`cost_from_log_prob` is the one place where it becomes our
cost (its negation, lower is better). It goes into ``acoustic_cost`` with ``lm_cost`` 0: the recogniser's
score is its whole decision score (any LM it fused in included), which ``decide-nbest`` weighs as the
acoustic part and ``rescore-nbest`` adds an NN LM to.

**ours**: the TSV / JSON-lines format of :mod:`asr_lm_quant.kaldi.nbest`.

**generic-json**: a ``.json`` file holding one list of items ``{"id", "hypotheses": [...], "scores": [...],
"reference"}`` (see :func:`read_generic_json`).

**espnet**: the decode directories of ESPnet2's ``espnet2/bin/asr_inference.py`` with ``--nbest K``. Each job
writes ``<decode>/logdir/output.JOB/`` and, per rank k = 1..K, a dir ``<k>best_recog/`` with Kaldi-style
tables: lines ``utt-id value`` (key, one space, value) in ``token`` (tokens), ``token_int`` (token ids),
``score`` and, when the model has a tokenizer, ``text`` (the words). ``score`` is ``str(hyp.score)``: the
beam search's total score, ``(1 - ctc_weight) * decoder + ctc_weight * ctc + lm_weight * lm (+ ngram_weight
* ngram) + penalty *
length`` in natural-log units, not divided by the length; the attention beam search stores a 0-d tensor
(``utt1 tensor(-12.3457)``, ``tensor(-3.5, device='cuda:0')`` on a GPU), the transducer search a float
(``utt1 -12.345678``). An utterance with fewer than K hypotheses is missing from the higher ranks' files.
Accepted paths: the decode dir (``logdir/output.*``), its ``logdir`` (``output.*``) or one ``output.N``
dir. ESPnet keeps references outside the decode dir (``data/<set>/text``): give them as Kaldi text.

**whisper-hf**: defined here (neither Hugging Face nor openai-whisper writes n-best lists to files): JSON
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

**nemo**: the JSON-lines manifest NeMo's ``examples/asr/transcribe_speech.py`` writes (``.json`` suffix, one
object a line) when beam search keeps its n-best (``decoding.beam.return_best_hypothesis=false``): each input
manifest item (``audio_filepath``, ``duration``, ``text`` = the reference, ...) plus ``pred_text`` (the best
hypothesis) and ``beams``, a list of ``[text, score]`` pairs best first, ``score`` being the hypothesis'
total log-probability score (with an n-gram LM: acoustic + alpha * LM + beta * length). The utterance id is
the item's ``utt_id`` if it has one, else the audio file's name without directory and extension.

**k2/icefall**: icefall's decode scripts write only 1-best transcripts (``recogs-<set>-<method>.txt``:
``cut-id:\\tref=[...]`` / ``cut-id:\\thyp=[...]`` lines) and WER summaries; their n-best lists
(``icefall.decode.Nbest``) live in memory only, so there is no icefall n-best file to read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from asr_lm_quant.errors import InputError, read_json_file
from asr_lm_quant.kaldi.nbest import NbestHyp, iter_ours

FORMATS = ("ours", "generic-json", "espnet", "whisper-hf", "nemo")
PER_TOKEN, TOTAL = "per-token", "total"


def cost_from_log_prob(score) -> float:
    """Our cost of a recogniser's score: scores are natural-log probabilities (higher is better), costs their
    negation (lower is better). Every reader of this module goes through here."""
    return 0.0 - float(score)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _good_id(utt) -> bool:
    return isinstance(utt, str) and bool(utt) and not any(c.isspace() for c in utt)


def _bad(path, n, is_line, message, key=None) -> InputError:
    """An error at JSON line ``n`` or at item ``n`` of a JSON list."""
    if is_line:
        return InputError(path, message, line=n, key=key)
    return InputError(path, f"item {n}{'' if key is None else f', key {key!r}'}: {message}")


def _starts_with_list(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"[")


def _json_items(path):
    """``(n, is_line, item)`` for the items of a JSON list (``n`` from 0) or of JSON lines (line numbers)."""
    if _starts_with_list(path):
        items = read_json_file(path, "n-best file")
        if not isinstance(items, list):
            raise InputError(path, "expected a JSON list of items")
        for n, item in enumerate(items):
            yield n, False, item
        return
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, f"not valid UTF-8 ({e.reason} at column {e.start + 1})", line=n) from None
            if not line.strip():
                continue
            try:
                yield n, True, json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"bad JSON: {e.msg}", line=n) from None


# --- detection ----------------------------------------------------------------------------------------------
def _first_item(path):
    for n, is_line, item in _json_items(path):
        return n, is_line, item
    raise InputError(path, "no n-best items in the file")


def _candidates(item, is_line) -> list[str]:
    if not isinstance(item, dict):
        return []
    keys = set(item)
    out = []
    if is_line and ({"utterance", "rank"} <= keys or keys & {"acoustic_cost", "lm_cost"}):
        out.append("ours")  # its reader says what else a row lacks
    if not is_line and keys & set(GENERIC_KEYS["hypotheses"]):
        out.append("generic-json")
    if "sequences" in keys:
        out.append("whisper-hf")
    if is_line and ("beams" in keys or any(k.startswith("pred_text") for k in keys)):
        out.append("nemo")
    return out


def detect_format(path) -> str:
    """The format of an n-best file or dir: a directory is an ESPnet decode dir, ``.tsv`` is ours, JSON is
    told apart by the keys of its first item; an error when none or several formats fit."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "n-best file does not exist")
    if path.is_dir():
        espnet_jobs(path)  # an error unless it is one
        return "espnet"
    if path.suffix == ".tsv":
        return "ours"
    n, is_line, item = _first_item(path)
    found = _candidates(item, is_line)
    if len(found) == 1:
        return found[0]
    where = f"line {n}" if is_line else f"item {n}"
    if found:
        raise InputError(path, f"ambiguous n-best format: {where} fits {' and '.join(found)}; give "
                               "--nbest-format")
    keys = ", ".join(sorted(item)) if isinstance(item, dict) else type(item).__name__
    raise InputError(path, f"unknown n-best format ({where} has {keys}); expected one of {', '.join(FORMATS)} "
                           "(see --nbest-format)")


def resolve_format(path, fmt: str = "auto") -> str:
    if fmt == "auto":
        return detect_format(path)
    if fmt not in FORMATS:
        raise InputError(path, f"unknown n-best format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if not Path(path).exists():
        raise InputError(path, "n-best file does not exist")
    if fmt == "espnet" and not Path(path).is_dir():
        raise InputError(path, "ESPnet n-best lists are read from the decode directory, not a file")
    if fmt != "espnet" and Path(path).is_dir():
        raise InputError(path, f"is a directory, not a {fmt} n-best file")
    return fmt


# --- all formats ----------------------------------------------------------------------------------------------
def iter_groups(path, fmt: str = "auto", references: dict | None = None):
    """Stream ``[NbestHyp, ...]`` per utterance from ``path`` in format ``fmt`` (``auto``: detected). Where
    the format carries references, they are put into ``references`` (``{utt: words}``) as they are read."""
    fmt = resolve_format(path, fmt)
    refs = {} if references is None else references
    if fmt == "ours":
        yield from iter_ours(path)
    elif fmt == "generic-json":
        groups, found = read_generic_json(path)
        refs.update(found)
        yield from groups
    elif fmt == "espnet":
        yield from iter_espnet(path)
    elif fmt == "whisper-hf":
        yield from iter_whisper_hf(path, refs)
    else:
        yield from iter_nemo(path, refs)


def read_references(path, fmt: str = "auto") -> dict:
    """``{utt: words}`` of the references an n-best file carries (empty for formats without any)."""
    refs: dict = {}
    for _ in iter_groups(path, fmt, refs):
        pass
    return refs


def score_kind(path, fmt: str = "auto") -> str | None:
    """``"per-token"`` or ``"total"`` where the format says which its scores are (whisper-hf), else None."""
    if resolve_format(path, fmt) != "whisper-hf":
        return None
    n, is_line, item = _first_item(path)
    return _whisper_scores(path, n, is_line, item)[1]


def check_per_token(path, fmt: str, per_token_costs: str) -> None:
    """``--per-token-costs`` must say ``acoustic`` (or ``both``) exactly when the file holds per-token averages."""
    kind = score_kind(path, fmt)
    averaged = per_token_costs in ("acoustic", "both")
    if kind == PER_TOKEN and not averaged:
        raise InputError(path, "its scores are per-token average log-probabilities (avg_logprobs, or "
                               "sequences_scores with length_penalty 1): give --per-token-costs acoustic")
    if kind == TOTAL and averaged:
        raise InputError(path, "its scores are total log-probabilities (sum_logprobs, or sequences_scores with "
                               "length_penalty 0): --per-token-costs must not include acoustic")


# --- generic JSON list ----------------------------------------------------------------------------------------
GENERIC_KEYS = {"id": ("id", "utterance", "utt"), "hypotheses": ("hypotheses", "input", "nbest"),
                "scores": ("scores", "score"), "lm_scores": ("lm_scores", "lm_score"),
                "reference": ("reference", "output", "ref")}


def is_generic_json(path) -> bool:
    """A ``.json`` file holding one JSON list (rather than JSON lines)."""
    path = Path(path)
    return path.suffix == ".json" and path.is_file() and _starts_with_list(path)


def _generic_field(item, name):
    for k in GENERIC_KEYS[name]:
        if k in item:
            return item[k]
    return None


def read_generic_json(path):
    """``(groups, references)`` of a generic n-best JSON file: a list of items
    ``{"id": "utt1", "hypotheses": ["best text", "second", ...], "scores": [-3.2, -4.1, ...],
    "reference": "the reference"}`` (also spelt ``utterance``/``utt``, ``input``/``nbest``, ``score``,
    ``output``/``ref``, the shape several published n-best corpora use). ``scores`` are the recogniser's
    log-probabilities (natural log, higher is better): they become acoustic costs (:func:`cost_from_log_prob`)
    with no LM cost; without scores the order of the list is the ranking (equal costs). Optional
    ``"lm_scores"``: the first pass's LM log-probabilities (natural log), kept apart so that the LM scale can be
    tuned (they become LM costs, and ``scores`` then holds the acoustic part only). ``references`` maps ids to
    reference texts where items have them."""
    path = Path(path)
    items = read_json_file(path, "n-best file")
    if not isinstance(items, list) or not items:
        raise InputError(path, "expected a non-empty JSON list of n-best items")
    groups, refs, seen = [], {}, set()
    for n, item in enumerate(items):
        where = f"item {n}"
        if not isinstance(item, dict):
            raise InputError(path, f"{where} is not an object")
        utt, hyps = _generic_field(item, "id"), _generic_field(item, "hypotheses")
        scores, ref = _generic_field(item, "scores"), _generic_field(item, "reference")
        if not _good_id(utt):
            raise InputError(path, f"{where}: needs an id without spaces (key id, utterance or utt)")
        if utt in seen:
            raise InputError(path, f"{where}: id appears twice", key=utt)
        seen.add(utt)
        if not isinstance(hyps, list) or not hyps or not all(isinstance(h, str) for h in hyps):
            raise InputError(path, f"{where}: hypotheses must be a non-empty list of strings", key=utt)
        if scores is None:
            scores = [0.0] * len(hyps)
        if not isinstance(scores, list) or len(scores) != len(hyps) or not all(map(_is_number, scores)):
            raise InputError(path, f"{where}: scores must be {len(hyps)} finite numbers, one per hypothesis",
                             key=utt)
        lm_scores = _generic_field(item, "lm_scores")
        if lm_scores is None:
            lm_scores = [0.0] * len(hyps)
        if not isinstance(lm_scores, list) or len(lm_scores) != len(hyps) or not all(map(_is_number, lm_scores)):
            raise InputError(path, f"{where}: lm_scores must be {len(hyps)} finite numbers, one per hypothesis",
                             key=utt)
        if ref is not None:
            if not isinstance(ref, str):
                raise InputError(path, f"{where}: the reference must be a string", key=utt)
            refs[utt] = ref.split()
        groups.append([NbestHyp(utt, r, h.split(), cost_from_log_prob(sc), cost_from_log_prob(lm))
                       for r, (h, sc, lm) in enumerate(zip(hyps, scores, lm_scores), 1)])
    return groups, refs


# --- ESPnet decode dirs ---------------------------------------------------------------------------------------
_JOB_RE = re.compile(r"^output\.(\d+)$")
_RANK_RE = re.compile(r"^(\d+)best_recog$")
_TENSOR_RE = re.compile(r"^tensor\(\s*([^,\s()]+)\s*(?:,[^()]*)?\)$")


def _rank_dirs(job: Path) -> list[tuple[int, Path]]:
    """``[(k, <k>best_recog dir)]`` of one ESPnet job dir, ranks 1..K without gaps."""
    dirs = sorted((int(m.group(1)), p) for p in job.iterdir() if p.is_dir() and (m := _RANK_RE.match(p.name)))
    for want, (k, p) in enumerate(dirs, 1):
        if k != want:
            raise InputError(p, f"{want}best_recog is missing (ranks must run 1, 2, ... without gaps)")
    return dirs


def espnet_jobs(path) -> list[Path]:
    """The ``output.N`` job dirs of an ESPnet decode dir (or its ``logdir``), in job order, or ``[path]``
    for a single job dir."""
    d = Path(path)
    if _rank_dirs(d):
        return [d]
    for base in (d / "logdir", d):
        if base.is_dir():
            jobs = [p for p in base.iterdir() if p.is_dir() and _JOB_RE.match(p.name)]
            if jobs:
                return sorted(jobs, key=lambda p: int(_JOB_RE.match(p.name).group(1)))
    raise InputError(d, "not an n-best directory: expected an ESPnet decode dir with logdir/output.N/, "
                        "output.N/ or <k>best_recog/ inside")


def _espnet_table(path: Path, what: str):
    """``{utt: (line, value)}`` of ``utt value`` lines (value: the rest of the line after one space)."""
    if not path.is_file():
        hint = " (ESPnet writes it only when the model has a tokenizer: decode with --token_type and " \
               "--bpemodel)" if what == "text" else ""
        raise InputError(path, f"missing: every <k>best_recog dir needs {what}{hint}")
    out = {}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise InputError(path, f"not valid UTF-8 ({e.reason} at column {e.start + 1})", line=n) from None
            if not line.strip():
                continue
            key, _, value = line.partition(" ")
            if not _good_id(key):
                raise InputError(path, f"expected 'utt-id {what}', got {line!r}", line=n)
            if key in out:
                raise InputError(path, "utterance id appears twice", line=n, key=key)
            out[key] = (n, value)
    return out


def parse_espnet_score(text: str, path, line: int, key: str) -> float:
    """A value of ESPnet's ``score`` file: ``tensor(-12.3457)`` (with ``, device=...`` / ``, dtype=...``
    after the number when it was not a CPU float32 tensor) or a plain float."""
    s = text.strip()
    m = _TENSOR_RE.match(s)
    try:
        v = float(m.group(1) if m else s)
    except ValueError:
        raise InputError(path, f"not a score: {text!r} (expected a number or tensor(number))", line=line,
                         key=key) from None
    if not math.isfinite(v):
        raise InputError(path, f"score {v} is not finite", line=line, key=key)
    return v


def _espnet_job(job: Path) -> dict:
    """``{utt: [NbestHyp by rank]}`` of one job dir, utterances in the order of ``1best_recog/text``."""
    ranks = _rank_dirs(job)
    if not ranks:
        raise InputError(job, "no <k>best_recog dirs in this ESPnet job dir")
    groups: dict = {}
    for k, d in ranks:
        texts, scores = _espnet_table(d / "text", "text"), _espnet_table(d / "score", "score")
        for key, (n, _) in texts.items():
            if key not in scores:
                raise InputError(d / "score", f"no score for this utterance (text has it on line {n})", key=key)
        for key, (n, _) in scores.items():
            if key not in texts:
                raise InputError(d / "text", f"no text for this utterance (score has it on line {n})", key=key)
        for key, (n, words) in texts.items():
            if k > 1 and len(groups.get(key, ())) != k - 1:
                raise InputError(d / "text", f"a {k}-best hypothesis for an utterance without a {k - 1}-best "
                                             f"one", line=n, key=key)
            sn, score = scores[key]
            cost = cost_from_log_prob(parse_espnet_score(score, d / "score", sn, key))
            groups.setdefault(key, []).append(NbestHyp(key, k, words.split(), cost, 0.0))
    return groups


def iter_espnet(path):
    """Per-utterance hypotheses of an ESPnet decode dir, job by job (see the module docstring)."""
    seen: dict = {}
    for job in espnet_jobs(path):
        groups = _espnet_job(job)
        for utt, hyps in groups.items():
            if utt in seen:
                raise InputError(job, f"utterance also decoded in {seen[utt]}", key=utt)
            seen[utt] = job.name
            yield hyps


# --- Whisper / Hugging Face generate ------------------------------------------------------------------------
_WHISPER_SCORES = ("sequences_scores", "avg_logprobs", "sum_logprobs")


def _whisper_scores(path, n, is_line, item):
    """``(scores, kind)`` of one whisper-hf item."""
    if not isinstance(item, dict):
        raise _bad(path, n, is_line, "expected a JSON object")
    present = [k for k in _WHISPER_SCORES if k in item]
    if len(present) != 1:
        raise _bad(path, n, is_line, f"needs exactly one of {', '.join(_WHISPER_SCORES)} (has "
                                     f"{', '.join(present) or 'none'})", key=item.get("id"))
    name = present[0]
    if name == "sequences_scores":
        penalty = item.get("length_penalty", 1.0)
        if not _is_number(penalty) or penalty not in (0, 1):
            raise _bad(path, n, is_line, f"length_penalty {json.dumps(penalty)}: sequences_scores are per-token "
                                         "averages with 1, totals with 0; other values are neither (generate "
                                         "again with length_penalty 0 or 1)", key=item.get("id"))
        kind = PER_TOKEN if penalty == 1 else TOTAL
    else:
        kind = PER_TOKEN if name == "avg_logprobs" else TOTAL
    return (name, item[name]), kind


def iter_whisper_hf(path, references: dict | None = None):
    """Per-utterance hypotheses of a whisper-hf file (see the module docstring)."""
    seen: set = set()
    first_kind = None
    for n, is_line, item in _json_items(path):
        (name, scores), kind = _whisper_scores(path, n, is_line, item)
        utt, seqs, ref = item.get("id"), item.get("sequences"), item.get("reference")
        if not _good_id(utt):
            raise _bad(path, n, is_line, "needs an id (a string without spaces)")
        if utt in seen:
            raise _bad(path, n, is_line, "id appears twice", key=utt)
        seen.add(utt)
        if not isinstance(seqs, list) or not seqs or not all(isinstance(s, str) for s in seqs):
            raise _bad(path, n, is_line, "sequences must be a non-empty list of strings", key=utt)
        if not isinstance(scores, list) or len(scores) != len(seqs):
            raise _bad(path, n, is_line, f"{name} must be a list of {len(seqs)} numbers, one per sequence",
                       key=utt)
        for i, s in enumerate(scores):
            if not _is_number(s):
                raise _bad(path, n, is_line, f"{name}[{i}] is not a finite number: {json.dumps(s)}", key=utt)
        if first_kind is None:
            first_kind = kind
        elif kind != first_kind:
            raise _bad(path, n, is_line, f"{kind} scores after {first_kind} ones: one file, one kind", key=utt)
        if ref is not None:
            if not isinstance(ref, str):
                raise _bad(path, n, is_line, "the reference must be a string", key=utt)
            if references is not None:
                references[utt] = ref.split()
        yield [NbestHyp(utt, r, text.split(), cost_from_log_prob(s), 0.0)
               for r, (text, s) in enumerate(zip(seqs, scores), 1)]
    if not seen:
        raise InputError(path, "no n-best items in the file")


# --- NeMo transcription manifests ---------------------------------------------------------------------------
def iter_nemo(path, references: dict | None = None):
    """Per-utterance hypotheses of a NeMo transcription manifest with ``beams`` (see the module docstring)."""
    if _starts_with_list(path):
        raise InputError(path, "a NeMo manifest is JSON lines (one object a line), not a JSON list")
    seen: dict = {}
    for n, _, item in _json_items(path):
        if not isinstance(item, dict):
            raise InputError(path, "expected a JSON object", line=n)
        utt = item.get("utt_id")
        if utt is None and isinstance(item.get("audio_filepath"), str):
            utt = Path(item["audio_filepath"]).stem
        if not _good_id(utt):
            raise InputError(path, "needs audio_filepath (or utt_id) to name the utterance, without spaces",
                             line=n)
        if utt in seen:
            raise InputError(path, f"utterance id also on line {seen[utt]} (two audio files of the same name, "
                                   "or segments of one file: give each item a utt_id)", line=n, key=utt)
        seen[utt] = n
        beams = item.get("beams")
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
            if not _is_number(beam[1]):
                raise InputError(path, f"beam {r}: score is not a finite number: {json.dumps(beam[1])}", line=n,
                                 key=utt)
            hyps.append(NbestHyp(utt, r, beam[0].split(), cost_from_log_prob(beam[1]), 0.0))
        ref = item.get("text")
        if ref is not None:
            if not isinstance(ref, str):
                raise InputError(path, "text (the reference) must be a string", line=n, key=utt)
            if references is not None:
                references[utt] = ref.split()
        yield hyps
    if not seen:
        raise InputError(path, "no n-best items in the file")
