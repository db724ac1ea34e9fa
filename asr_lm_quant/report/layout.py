"""Where a recipe's stages leave their results, and what its systems are called: the report's one input
besides the experiment directory, so ``report/`` knows no recipe.

A layout file is JSON, every path relative to the experiment directory (``recipes/mini/conf/report_layout.json``
is one)::

    {"title": "the mini recipe",
     "first_pass": {"dir": "ngram", "name": "3gram", "method": "kn3", "label": "3-gram", "model": "KN 3-gram",
                    "lm": "3gram.arpa",
                    "tuning": "first_pass.json",
                    "oracle": {"dev": "decode_test_dev/oracle.json", "eval": "decode_test_eval/oracle.json"},
                    "sweep": "decode_test/scoring_kaldi/sweep.json"},
     "full_precision": {"lm": "base", "lm_deep": "deep"},
     "quant_results": "quant/results.json",
     "rescore": "rescore"}

``first_pass``: the first-pass n-gram LM's names (``name``/``method`` in results.json, ``label``/``model`` in
the table), its directory and the files in it (``ppl_{valid,test}.json`` too; the per-utterance errors its
tuning result names are relative to it). ``full_precision``: each full-precision Transformer's directory
(``ppl_{valid,test}.json`` inside) and the model name that ``quant_results`` rows give it. ``rescore``:
``<system>/{nbest,lattice}.json`` tuning results inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr_lm_quant.errors import InputError, read_json_file


@dataclass(frozen=True)
class FirstPass:
    dir: str
    name: str
    method: str
    label: str
    model: str
    lm: str
    tuning: str
    oracle: dict[str, str]
    sweep: str


@dataclass(frozen=True)
class Layout:
    title: str
    first_pass: FirstPass
    full_precision: dict[str, str]      # system (its directory) -> model name in the quantization results
    quant_results: str
    rescore: str

    def full_precision_system(self, model: str | None) -> str | None:
        """The full-precision system of a model name (``"base"`` -> ``"lm"``)."""
        return next((s for s, m in self.full_precision.items() if m == model), None)


def _strings(path, obj, where: str, keys) -> dict:
    if not isinstance(obj, dict):
        raise InputError(path, f"{where or 'the layout'} must be a JSON object", key=where or None)
    unknown = sorted(set(obj) - set(keys))
    if unknown:
        raise InputError(path, f"unknown entry (expected {', '.join(keys)})",
                         key=".".join(filter(None, [where, unknown[0]])))
    for k in keys:
        if k not in obj:
            raise InputError(path, "missing", key=".".join(filter(None, [where, k])))
    return obj


def _string_map(path, obj, key: str) -> dict[str, str]:
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, str) and v
                                                         for k, v in obj.items()):
        raise InputError(path, "must be an object of names to non-empty strings", key=key)
    return dict(obj)


def _string(path, v, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise InputError(path, "must be a non-empty string", key=key)
    return v


def load_layout(path) -> Layout:
    """Read and check a layout file; a missing or misspelt entry is an error naming it."""
    path = Path(path)
    d = _strings(path, read_json_file(path, "report layout"), "",
                 ("title", "first_pass", "full_precision", "quant_results", "rescore"))
    fp = _strings(path, d["first_pass"], "first_pass",
                  ("dir", "name", "method", "label", "model", "lm", "tuning", "oracle", "sweep"))
    first = FirstPass(**{k: _string(path, fp[k], f"first_pass.{k}") for k in fp if k != "oracle"},
                      oracle=_string_map(path, fp["oracle"], "first_pass.oracle"))
    return Layout(_string(path, d["title"], "title"), first, _string_map(path, d["full_precision"], "full_precision"),
                  _string(path, d["quant_results"], "quant_results"), _string(path, d["rescore"], "rescore"))
