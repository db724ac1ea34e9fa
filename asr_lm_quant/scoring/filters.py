"""Hypothesis and reference filters applied before scoring.

Kaldi's ``score_kaldi_wer.sh`` filters with ``cat`` unless the recipe has an executable
``local/wer_hyp_filter`` / ``local/wer_ref_filter`` / ``local/wer_output_filter``; ``command_filter``
runs such a program on a whole text file. ``hub5_word_filter`` drops what Switchboard's
``local/score_sclite.sh`` removes from the CTM, for scoring plain text the same way.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from asr_lm_quant.errors import InputError

# The patterns of local/score_sclite.sh (grep -i -v -E), applied there to whole CTM lines.
NOISE_RE = re.compile(r"\[NOISE|LAUGHTER|VOCALIZED-NOISE\]", re.IGNORECASE)
UNK_RE = re.compile(r"<UNK>", re.IGNORECASE)
HESITATIONS = ("uh", "um", "eh", "mm", "hm", "ah", "huh", "ha", "er", "oof", "hee", "ach", "eee", "ew")
HESITATION_RE = re.compile(r" (" + "|".join(h.upper() for h in HESITATIONS) + r")$", re.IGNORECASE)


def hub5_drops_word(word: str) -> bool:
    """True for a word the Switchboard Hub5 scoring removes from the hypothesis.

    The same tests as the CTM filter, on the word alone: noise and laughter tags (any word containing
    ``[noise``, ``laughter`` or ``vocalized-noise]``), ``<unk>``, hesitations and partial words ending in ``-``.
    """
    return (bool(NOISE_RE.search(word)) or bool(UNK_RE.search(word))
            or bool(HESITATION_RE.search(" " + word)) or word.endswith("-"))


def hub5_word_filter(words: list[str]) -> list[str]:
    return [w for w in words if not hub5_drops_word(w)]


WORD_FILTERS = {"none": None, "hub5": hub5_word_filter}


def command_filter(cmd: str, src: Path, dst: Path):
    """Run a shell filter ``cmd < src > dst`` (a recipe's ``local/wer_hyp_filter``); failure is an InputError."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        p = subprocess.run(cmd, shell=True, stdin=fin, stdout=fout, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise InputError(None, f"filter command {cmd!r} failed on {src} (exit {p.returncode}): "
                               f"{p.stderr.decode(errors='replace').strip()[-300:]}")


def kaldi_recipe_filters(recipe_dir: Path = Path(".")) -> tuple[str | None, str | None]:
    """``(ref_cmd, hyp_cmd)`` as score_kaldi_wer.sh picks them from ``local/`` (None means ``cat``)."""
    def exe(name):
        p = recipe_dir / "local" / name
        return str(p) if p.is_file() and p.stat().st_mode & 0o111 else None
    ref = exe("wer_ref_filter") or exe("wer_output_filter")
    hyp = exe("wer_hyp_filter") or exe("wer_output_filter")
    return ref, hyp
