"""Plain text corpora (one sentence per line, words separated by spaces) -> LM text and a vocabulary.

``prepare_plain`` reads train/valid/test files (plain, .gz, .xz or .bz2), optionally normalises them
ASR-style (``normalize_asr_text``), builds a vocabulary from the training text (minimum count and/or a
size cap), maps the other words to ``<unk>`` and writes ``train.txt valid.txt test.txt words.txt
stats.json`` into one directory, all together or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.text.normalize import normalize_asr_text
from asr_lm_quant.text.outdir import staged_output, write_json
from asr_lm_quant.kaldi.symbols import unknown_word
from asr_lm_quant.text.swbd_layout import lm_vocabulary, read_symbol_table
from asr_lm_quant.text.vocab import BOS, UNK, Vocabulary
from asr_lm_quant.textio import check_exists, read_lines, split_fields

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
OUTPUT_NAMES = ("train.txt", "valid.txt", "test.txt", "words.txt", "stats.json")


def read_sentences(path, *, normalize: str = "none"):
    """Yield sentences (lists of words) from ``path``; ``normalize`` is ``none`` or ``asr``."""
    if normalize not in ("none", "asr"):
        raise ValueError(f"unknown normalisation {normalize!r}")
    for n, line in read_lines(path):
        if normalize == "asr":
            yield from normalize_asr_text(line)
        else:
            words = split_fields(line)
            if words:
                yield words


def count_words(sentences) -> Counter:
    counts = Counter()
    for words in sentences:
        counts.update(words)
    return counts


def build_vocabulary(counts: Counter, *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
    """``<s>``, ``<unk>``, then the words seen at least ``min_count`` times, most frequent first (ties in
    code-point order), at most ``max_size`` entries in all (including ``<s>`` and ``<unk>``)."""
    if min_count < 1:
        raise ValueError("min_count must be at least 1")
    if max_size is not None and max_size < 3:
        raise ValueError("max_size must be at least 3 (<s>, <unk> and one word)")
    ranked = sorted(((w, c) for w, c in counts.items() if c >= min_count and w not in (BOS, UNK)),
                    key=lambda wc: (-wc[1], wc[0]))
    words = [BOS, UNK] + [w for w, _ in ranked]
    if max_size is not None:
        words = words[:max_size]
    return Vocabulary(words)


def _map_and_write(sentences, vocab: Vocabulary, out, *, map_unk: bool, desc: str):
    """Write sentences to ``out`` (OOVs as ``<unk>`` if ``map_unk``); return token/OOV counts."""
    stats = {"sentences": 0, "words": 0, "oov": 0, "unk_in_source": 0}
    index = vocab.index
    for words in progress_bar(sentences, desc=desc, unit=" sent", mininterval=2.0, leave=False):
        stats["sentences"] += 1
        stats["words"] += len(words)
        mapped = []
        for w in words:
            if w == UNK:
                stats["unk_in_source"] += 1
                mapped.append(w)
            elif w in index:
                mapped.append(w)
            else:
                stats["oov"] += 1
                mapped.append(UNK if map_unk else w)
        out.write(" ".join(mapped) + "\n")
    words = stats["words"]
    stats["oov_rate"] = stats["oov"] / words if words else 0.0
    stats["unk_rate"] = (stats["oov"] + stats["unk_in_source"]) / words if words else 0.0
    return stats


def prepare_plain(train, valid, test, out_dir, *, min_count: int = 1, max_size: int | None = None,
                  normalize: str = "none", map_unk: bool = True, vocab=None, unk: str | None = None,
                  overwrite: bool = False) -> dict:
    """Prepare LM text from plain corpora; return the statistics also written to ``stats.json``.

    ``vocab``: a words.txt (ours or Kaldi's) to use instead of building one from ``train`` (then
    ``min_count``/``max_size`` do not apply); its unknown-word symbol is ``unk``, or the one of its lang dir
    (``oov.txt``), or ``<unk>``, and becomes our ``<unk>``. ``oov_rate`` counts words the vocabulary lacks; ``unk_rate``
    also counts ``<unk>`` already in the source (WikiText has mapped its rare words to ``<unk>``).
    """
    inputs = {"train": Path(train), "valid": Path(valid), "test": Path(test)}
    check_exists(*inputs.values(), *([vocab] if vocab else []))
    counts = count_words(progress_bar(read_sentences(inputs["train"], normalize=normalize), desc="counting",
                                      unit=" sent", mininterval=2.0, leave=False))
    if not counts:
        raise InputError(inputs["train"], "no words in the training text (empty corpus)")
    if vocab:
        vocab_path = str(vocab)
        vocab = lm_vocabulary(read_symbol_table(vocab), source=vocab, unk=unknown_word(vocab, unk))
    else:
        vocab_path = None
        vocab = build_vocabulary(counts, min_count=min_count, max_size=max_size)
    stats = {"inputs": {k: str(v) for k, v in inputs.items()}, "vocab_file": vocab_path,
             "normalize": normalize, "min_count": min_count, "max_size": max_size, "map_unk": map_unk,
             "vocab_size": len(vocab), "train_types": len(counts)}
    with staged_output(out_dir, OUTPUT_NAMES, overwrite=overwrite) as stage:
        for split in SPLITS:
            with open(stage / f"{split}.txt", "w", encoding="utf-8") as out:
                s = _map_and_write(read_sentences(inputs[split], normalize=normalize), vocab, out,
                                   map_unk=map_unk, desc=split)
            if s["sentences"] == 0:
                raise InputError(inputs[split], "no sentences (empty corpus)")
            stats[split] = s
            log.info("%s: %d sentences, %d words, OOV rate %.2f%%, <unk> rate %.2f%%", split,
                     s["sentences"], s["words"], 100 * s["oov_rate"], 100 * s["unk_rate"])
        vocab.save(stage / "words.txt")
        write_json(stage / "stats.json", stats)
    return stats
