"""What the n-best readers share: the one conversion of a recogniser's score into our cost, and the reading of
JSON lists and JSON lines with errors that name the item or line."""

from __future__ import annotations

import json
import math

from asr_lm_quant.errors import InputError, read_json_file

PER_TOKEN, TOTAL = "per-token", "total"  # what a recogniser's scores are: averages per token, or totals


def cost_from_log_prob(score) -> float:
    """Our cost of a recogniser's score: scores are natural-log probabilities (higher is better), costs their
    negation (lower is better). Every reader of another recogniser's n-best goes through here."""
    return 0.0 - float(score)


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def good_id(utt) -> bool:
    return isinstance(utt, str) and bool(utt) and not any(c.isspace() for c in utt)


def item_error(path, n, is_line, message, key=None) -> InputError:
    """An error at JSON line ``n`` or at item ``n`` of a JSON list."""
    if is_line:
        return InputError(path, message, line=n, key=key)
    return InputError(path, f"item {n}{'' if key is None else f', key {key!r}'}: {message}")


def starts_with_list(path) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(b"[")


def json_items(path):
    """``(n, is_line, item)`` for the items of a JSON list (``n`` from 0) or of JSON lines (line numbers)."""
    if starts_with_list(path):
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


def first_item(path):
    """``(n, is_line, item)`` of the first item of a JSON n-best file."""
    for n, is_line, item in json_items(path):
        return n, is_line, item
    raise InputError(path, "no n-best items in the file")
