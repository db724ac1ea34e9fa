"""The Switchboard LM text layout of Kaldi's egs/swbd/s5c/local/pytorchnn/data_prep.sh, shared by the
Kaldi-directory and the LDC-corpus routes.

- Utterances (``utt-id words``) of each conversation are put in start-time order (conversations in id order;
  equal start times keep their input order), the ids are cut and the words lower-cased
  (local/pytorchnn/sort_by_start_time.py, ``cut -d' ' -f2- | tr A-Z a-z``).
- train.txt = Switchboard training text, Fisher text, Switchboard text, Switchboard text (3:1);
  valid.txt = the Switchboard dev text; test.txt = eval2000.
- The vocabulary is a Kaldi symbol table (``data/lang/words.txt``) without ``<eps>`` and the
  disambiguation symbols ``#0``, ``#1``.., with ``<unk>`` added if it lacks it.
"""

from __future__ import annotations

import logging
import re

from asr_lm_quant.errors import InputError
from asr_lm_quant.progress import bar as progress_bar
from asr_lm_quant.text.outdir import staged_output, write_json
from asr_lm_quant.text.vocab import BOS, UNK, Vocabulary
from asr_lm_quant.textio import read_lines, split_fields

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("train.txt", "valid.txt", "test.txt", "words.txt", "stats.json")
_UTT_ID = re.compile(r"^(.+)-([A-Za-z0-9]+)_(\d+)-(\d+)$")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_DISAMBIG = re.compile(r"^#\d+$")


def ascii_lower(text: str) -> str:
    """``tr 'A-Z' 'a-z'``: only ASCII letters change."""
    return text.translate(_LOWER)


def utterance_key(utt_id: str):
    """``(conversation, start)`` of ``sw02001-A_000098-001156`` / ``en_4156-A_030185-030248``, or None."""
    m = _UTT_ID.match(utt_id)
    if not m:
        return None
    return m.group(1), int(m.group(3))


class Utterance:
    __slots__ = ("utt_id", "text", "where")

    def __init__(self, utt_id: str, text: str, where=None):
        self.utt_id = utt_id
        self.text = text  # the words as one string, after the id and its space
        self.where = where  # (path, line) for error messages

    def line(self) -> str:
        return f"{self.utt_id} {self.text}" if self.text else self.utt_id


def read_kaldi_text(path) -> list[Utterance]:
    """Utterances of a Kaldi ``text`` file (``utt-id w1 w2 ...``), in file order."""
    utts = []
    for n, line in read_lines(path):
        if not line.strip():
            raise InputError(path, "empty line (expected 'utt-id words...')", line=n)
        utt_id, _, text = line.partition(" ")
        utts.append(Utterance(utt_id, text, (path, n)))
    if not utts:
        raise InputError(path, "no utterances (empty file)")
    return utts


def sort_by_start_time(utts: list[Utterance]) -> list[Utterance]:
    """Conversations in id order, each conversation's utterances (both sides) by start time."""
    keyed = []
    for u in utts:
        key = utterance_key(u.utt_id)
        if key is None:
            path, n = u.where or (None, None)
            raise InputError(path, f"utterance id {u.utt_id!r} is not <conversation>-<side>_<start>-<end> "
                                   "(needed to order each conversation by start time)", line=n)
        keyed.append((key, u))
    keyed.sort(key=lambda ku: ku[0])  # stable: equal start times keep their order
    return [u for _, u in keyed]


def lm_lines(utts: list[Utterance]) -> list[str]:
    """LM text lines: start-time order, ids cut, lower case."""
    return [ascii_lower(u.text) for u in sort_by_start_time(utts)]


def read_symbol_table(path) -> list[str]:
    """Words of a Kaldi/our ``words.txt`` by increasing id (read by the one symbol-table reader)."""
    from asr_lm_quant.kaldi.symbols import SymbolTable
    return SymbolTable.load(path).words_in_order()


def lm_vocabulary(words: list[str], *, source=None, unk: str = UNK) -> Vocabulary:
    """Our vocabulary from a Kaldi word list: ``<eps>`` and ``#N`` dropped, ``<s>``/``<unk>`` added if absent.

    ``unk``: the word list's unknown-word symbol (Kaldi's ``oov.txt``, e.g. ``<UNK>``); it becomes our
    ``<unk>``, so that it is not kept as an ordinary word beside a second unknown word.
    """
    kept = [w for w in words if w != "<eps>" and not _DISAMBIG.match(w)]
    if unk != UNK and unk in kept:
        if UNK in kept:
            raise InputError(source, f"has both {unk!r} (the unknown-word symbol) and {UNK!r}")
        kept = [UNK if w == unk else w for w in kept]
    for required in (BOS, UNK):
        if required not in kept:
            if source is not None:
                log.info("%s: adding %s to the vocabulary", source, required)
            kept.append(required)
    return Vocabulary(kept)


def _text_stats(lines, vocab: Vocabulary) -> dict:
    n_lines = n_words = oov = 0
    index = vocab.index
    for line in lines:
        n_lines += 1
        for w in split_fields(line):
            n_words += 1
            if w not in index:
                oov += 1
    return {"sentences": n_lines, "words": n_words, "oov": oov,
            "oov_rate": oov / n_words if n_words else 0.0}


def write_swbd_lm_text(out_dir, *, train: list[str], valid: list[str], test: list[str], fisher_lines,
                       vocab: Vocabulary, info: dict, overwrite: bool = False) -> dict:
    """Write the layout described above; ``fisher_lines`` is an iterable of lines (or None).

    Everything is written to a staging directory first, so an error in the (streamed) Fisher text leaves
    ``out_dir`` as it was.
    """
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        if not lines:
            raise InputError(info.get("inputs", {}).get(name), f"no {name} utterances")
    stats = dict(info)
    with staged_output(out_dir, OUTPUT_NAMES, overwrite=overwrite) as stage:
        fisher_stats = {"sentences": 0, "words": 0, "oov": 0}
        index = vocab.index
        with open(stage / "train.txt", "w", encoding="utf-8") as f:
            swbd_block = "".join(line + "\n" for line in train)
            f.write(swbd_block)
            for line in progress_bar(fisher_lines or (), desc="fisher", unit=" lines", mininterval=2.0, leave=False):
                f.write(line + "\n")
                fields = split_fields(line)
                fisher_stats["sentences"] += 1
                fisher_stats["words"] += len(fields)
                fisher_stats["oov"] += sum(1 for w in fields if w not in index)
            f.write(swbd_block)
            f.write(swbd_block)
        fw = fisher_stats["words"]
        fisher_stats["oov_rate"] = fisher_stats["oov"] / fw if fw else 0.0
        swbd = _text_stats(train, vocab)
        stats["train"] = {k: 3 * swbd[k] + fisher_stats[k] for k in ("sentences", "words", "oov")}
        stats["train"]["oov_rate"] = stats["train"]["oov"] / stats["train"]["words"] if stats["train"][
            "words"] else 0.0
        stats["train_parts"] = {"swbd": swbd, "swbd_copies": 3, "fisher": fisher_stats}
        for name, lines in (("valid", valid), ("test", test)):
            with open(stage / f"{name}.txt", "w", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in lines)
            stats[name] = _text_stats(lines, vocab)
        vocab.save(stage / "words.txt")
        stats["vocab_size"] = len(vocab)
        write_json(stage / "stats.json", stats)
    for split in ("train", "valid", "test"):
        s = stats[split]
        log.info("%s: %d sentences, %d words, OOV rate %.2f%%", split, s["sentences"], s["words"],
                 100 * s["oov_rate"])
    return stats
