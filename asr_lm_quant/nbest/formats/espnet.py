"""**espnet**: the decode directories of ESPnet2's ``espnet2/bin/asr_inference.py`` with ``--nbest K``.

Each job writes ``<decode>/logdir/output.JOB/`` and, per rank k = 1..K, a dir ``<k>best_recog/`` with
Kaldi-style tables: lines ``utt-id value`` (key, one space, value) in ``token`` (tokens), ``token_int`` (token
ids), ``score`` and, when the model has a tokenizer, ``text`` (the words). ``score`` is ``str(hyp.score)``: the
beam search's total score, ``(1 - ctc_weight) * decoder + ctc_weight * ctc + lm_weight * lm (+ ngram_weight
* ngram) + penalty * length`` in natural-log units, not divided by the length; the attention beam search
stores a 0-d tensor (``utt1 tensor(-12.3457)``, ``tensor(-3.5, device='cuda:0')`` on a GPU), the transducer
search a float (``utt1 -12.345678``). An utterance with fewer than K hypotheses is missing from the higher
ranks' files. Accepted paths: the decode dir (``logdir/output.*``), its ``logdir`` (``output.*``) or one
``output.N`` dir. ESPnet keeps references outside the decode dir (``data/<set>/text``): give them as Kaldi
text.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.nbest import NbestHyp
from asr_lm_quant.nbest.common import cost_from_log_prob, good_id
from asr_lm_quant.nbest.formats import Format
from asr_lm_quant.textio import split_fields

_JOB_RE = re.compile(r"^output\.(\d+)$")
_RANK_RE = re.compile(r"^(\d+)best_recog$")
_TENSOR_RE = re.compile(r"^tensor\(\s*([^,\s()]+)\s*(?:,[^()]*)?\)$")
WHAT = "an ESPnet decode dir with logdir/output.N/, output.N/ or <k>best_recog/ inside"


def _rank_dirs(job: Path) -> list[tuple[int, Path]]:
    """``[(k, <k>best_recog dir)]`` of one ESPnet job dir, ranks 1..K without gaps."""
    dirs = sorted((int(m.group(1)), p) for p in job.iterdir() if p.is_dir() and (m := _RANK_RE.match(p.name)))
    for want, (k, p) in enumerate(dirs, 1):
        if k != want:
            raise InputError(p, f"{want}best_recog is missing (ranks must run 1, 2, ... without gaps)")
    return dirs


def _job_dirs(base: Path) -> list[Path]:
    return [p for p in base.iterdir() if p.is_dir() and _JOB_RE.match(p.name)] if base.is_dir() else []


def looks_like_espnet(path) -> bool:
    """A directory holding ESPnet's rank dirs, job dirs, or a logdir of job dirs (checked in full on reading)."""
    d = Path(path)
    return (d.is_dir() and any(p.is_dir() and _RANK_RE.match(p.name) for p in d.iterdir())
            or bool(_job_dirs(d / "logdir") or _job_dirs(d)))


def espnet_jobs(path) -> list[Path]:
    """The ``output.N`` job dirs of an ESPnet decode dir (or its ``logdir``), in job order, or ``[path]``
    for a single job dir."""
    d = Path(path)
    if _rank_dirs(d):
        return [d]
    for base in (d / "logdir", d):
        jobs = _job_dirs(base)
        if jobs:
            return sorted(jobs, key=lambda p: int(_JOB_RE.match(p.name).group(1)))
    raise InputError(d, f"not an n-best directory: expected {WHAT}")


def _table(path: Path, what: str):
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
            if not good_id(key):
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


def _job(job: Path) -> dict:
    """``{utt: [NbestHyp by rank]}`` of one job dir, utterances in the order of ``1best_recog/text``."""
    ranks = _rank_dirs(job)
    if not ranks:
        raise InputError(job, "no <k>best_recog dirs in this ESPnet job dir")
    groups: dict = {}
    for k, d in ranks:
        texts, scores = _table(d / "text", "text"), _table(d / "score", "score")
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
            groups.setdefault(key, []).append(NbestHyp(key, k, split_fields(words), cost, 0.0))
    return groups


def read(path, references=None):
    """Per-utterance hypotheses of an ESPnet decode dir, job by job (references: none in the decode dir)."""
    seen: dict = {}
    for job in espnet_jobs(path):
        groups = _job(job)
        for utt, hyps in groups.items():
            if utt in seen:
                raise InputError(job, f"utterance also decoded in {seen[utt]}", key=utt)
            seen[utt] = job.name
            yield hyps


FORMAT = Format(name="espnet", help="a decode dir", read=read, detect=looks_like_espnet, directory=WHAT)
