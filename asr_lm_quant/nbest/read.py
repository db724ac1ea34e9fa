"""Reading n-best lists of any registered format (:mod:`asr_lm_quant.nbest.formats`), told apart or named.

Every reader yields per-utterance lists of :class:`~asr_lm_quant.kaldi.nbest.NbestHyp`, best rank first, and
collects the references a format carries. A recogniser's score for a hypothesis is a (weighted sum of)
natural-log probabilities, higher is better; :func:`~asr_lm_quant.nbest.common.cost_from_log_prob` is the one
place where it becomes our cost (its negation, lower is better). It goes into ``acoustic_cost`` with
``lm_cost`` 0: the recogniser's score is its whole decision score (any LM it fused in included), which
``decide-nbest`` weighs as the acoustic part and ``rescore-nbest`` adds an NN LM to.

icefall's decode scripts write only 1-best transcripts and WER summaries; their n-best lists
(``icefall.decode.Nbest``) live in memory only, so there is no icefall n-best file to read.
"""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.nbest.common import PER_TOKEN, TOTAL, first_item
from asr_lm_quant.nbest.formats import all_formats


def _detect_dir(path: Path) -> list[str]:
    formats = {n: f for n, f in all_formats().items() if f.directory}
    found = [n for n, f in formats.items() if f.detect(path)]
    if not found:
        raise InputError(path, "not an n-best directory: expected " + " or ".join(f.directory
                                                                                for f in formats.values()))
    return found


def detect_format(path) -> str:
    """The format of an n-best file or dir: by the directory's layout, the file's suffix or the keys of its first
    JSON item; an error when none or several formats fit."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "n-best file does not exist")
    formats = all_formats()
    if path.is_dir():
        found, where = _detect_dir(path), "the directory"
    else:
        by_suffix = [n for n, f in formats.items() if path.suffix and path.suffix in f.suffixes]
        if by_suffix:
            return by_suffix[0]
        n, is_line, item = first_item(path)
        where = f"line {n}" if is_line else f"item {n}"
        found = [] if not isinstance(item, dict) else \
            [name for name, f in formats.items() if not f.directory and f.detect and f.detect(item, is_line)]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(path, f"ambiguous n-best format: {where} fits {' and '.join(found)}; give "
                               "--nbest-format")
    keys = ", ".join(sorted(item)) if isinstance(item, dict) else type(item).__name__
    raise InputError(path, f"unknown n-best format ({where} has {keys}); expected one of {', '.join(formats)} "
                           "(see --nbest-format)")


def resolve_format(path, fmt: str = "auto") -> str:
    """``fmt``, checked against the path (``auto``: detected)."""
    if fmt == "auto":
        return detect_format(path)
    formats = all_formats()
    if fmt not in formats:
        raise InputError(path, f"unknown n-best format {fmt!r}; expected auto or one of {', '.join(formats)}")
    if not Path(path).exists():
        raise InputError(path, "n-best file does not exist")
    if formats[fmt].directory and not Path(path).is_dir():
        raise InputError(path, f"{fmt} n-best lists are read from a directory ({formats[fmt].directory}), not a "
                               "file")
    if not formats[fmt].directory and Path(path).is_dir():
        raise InputError(path, f"is a directory, not a {fmt} n-best file")
    return fmt


def iter_groups(path, fmt: str = "auto", references: dict | None = None):
    """Stream ``[NbestHyp, ...]`` per utterance from ``path`` in format ``fmt`` (``auto``: detected). Where
    the format carries references, they are put into ``references`` (``{utt: words}``) as they are read."""
    fmt = resolve_format(path, fmt)
    yield from all_formats()[fmt].read(path, {} if references is None else references)


def read_nbest(path, fmt: str = "auto") -> list:
    """All hypotheses of an n-best file or dir; see :func:`iter_groups`."""
    return [h for g in iter_groups(path, fmt) for h in g]


def read_references(path, fmt: str = "auto") -> dict:
    """``{utt: words}`` of the references an n-best file carries (empty for formats without any)."""
    refs: dict = {}
    for _ in iter_groups(path, fmt, refs):
        pass
    return refs


def score_kind(path, fmt: str = "auto") -> str | None:
    """``"per-token"`` or ``"total"`` where the format says which its scores are (whisper-hf), else None."""
    f = all_formats()[resolve_format(path, fmt)]
    return f.score_kind(path) if f.score_kind else None


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
