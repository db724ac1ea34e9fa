"""Kaldi ``text`` files (``utt-id w1 w2 ...``), read into ordered dicts and written back."""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import read_lines, split_fields


def read_text(path, *, allow_duplicates: bool = False) -> dict[str, list[str]]:
    """``{utt_id: words}`` in file order; a blank line or a repeated utterance id is an InputError."""
    out: dict[str, list[str]] = {}
    for n, line in read_lines(path):
        words = split_fields(line)
        if not words:
            raise InputError(path, "empty line (expected 'utt-id word ...')", line=n)
        key = words[0]
        if key in out and not allow_duplicates:
            raise InputError(path, "utterance id appears twice", line=n, key=key)
        out[key] = words[1:]
    return out


def read_utt2spk(path) -> dict[str, str]:
    out = {}
    for n, line in read_lines(path):
        f = split_fields(line)
        if not f:
            continue
        if len(f) != 2:
            raise InputError(path, f"expected 'utt-id speaker-id', got {len(f)} fields", line=n)
        out[f[0]] = f[1]
    return out


def format_text(hyp: dict[str, list[str]]) -> str:
    return "".join(f"{k} {' '.join(w)}\n" if w else f"{k}\n" for k, w in hyp.items())


def write_text(path, hyp: dict[str, list[str]]):
    with atomic_open(Path(path)) as f:
        f.write(format_text(hyp))


def read_words_txt(path) -> dict[int, str]:
    """``{id: word}`` from a Kaldi symbol table (read by the one symbol-table reader)."""
    from asr_lm_quant.kaldi.symbols import SymbolTable
    return dict(SymbolTable.load(path).id_to_word)


def words_txt_of(lang_or_words) -> Path:
    """``words.txt`` itself, or the one inside a lang/graph dir."""
    p = Path(lang_or_words)
    if p.is_dir():
        p = p / "words.txt"
    if not p.is_file():
        raise InputError(p, "symbol table does not exist")
    return p
