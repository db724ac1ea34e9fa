"""LM text from an existing Kaldi egs/swbd/s5c setup, as its local/pytorchnn/data_prep.sh makes it.

Inputs (relative to the s5c directory): data/train_nodev/text, data/train_dev/text, data/eval2000/text,
data/local/lm/fisher/text1.gz (Fisher text from local/swbd1_train_lms.sh) and data/lang/words.txt.
One deliberate difference: an utterance without words gives an empty line, where ``cut -f2-`` would print
its id.
"""

from __future__ import annotations

from pathlib import Path

from asr_lm_quant.text.fisher import map_hesitations
from asr_lm_quant.kaldi.symbols import unknown_word
from asr_lm_quant.text.swbd_layout import (lm_lines, lm_vocabulary, read_kaldi_text, read_symbol_table,
                                           write_swbd_lm_text)
from asr_lm_quant.textio import check_exists, read_lines


def _resolve(base: Path, p) -> Path | None:
    if p is None or str(p) == "none":
        return None
    p = Path(p)
    return p if p.is_absolute() else base / p


def _fisher_lines(path):
    for _, line in read_lines(path):
        yield map_hesitations(line)


def prepare_kaldi_swbd(kaldi_dir, out_dir, *, train="data/train_nodev/text", valid="data/train_dev/text",
                       test="data/eval2000/text", fisher="data/local/lm/fisher/text1.gz",
                       words="data/lang/words.txt", unk: str | None = None, overwrite: bool = False) -> dict:
    """Write train/valid/test.txt, words.txt and stats.json into ``out_dir``; return the statistics.

    ``fisher=None`` (or ``"none"``) leaves Fisher out (train.txt is then Switchboard three times).
    """
    base = Path(kaldi_dir)
    paths = {k: _resolve(base, v) for k, v in
             (("train", train), ("valid", valid), ("test", test), ("fisher", fisher), ("words", words))}
    check_exists(*(p for p in paths.values() if p is not None))
    vocab = lm_vocabulary(read_symbol_table(paths["words"]), source=paths["words"],
                          unk=unknown_word(paths["words"], unk))
    text = {k: lm_lines(read_kaldi_text(paths[k])) for k in ("train", "valid", "test")}
    info = {"source": "kaldi-swbd", "inputs": {k: str(v) if v else None for k, v in paths.items()}}
    return write_swbd_lm_text(out_dir, train=text["train"], valid=text["valid"], test=text["test"],
                              fisher_lines=_fisher_lines(paths["fisher"]) if paths["fisher"] else None,
                              vocab=vocab, info=info, overwrite=overwrite)
