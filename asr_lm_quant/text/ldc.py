"""Switchboard LM text straight from the LDC releases, for users without a Kaldi setup.

- Switchboard-1 (LDC97S62) ms98 transcripts, ``swb_ms98_transcriptions/<nn>/<nnnn>/sw<nnnn><A|B>-ms98-a-trans.text``
  with ``sw-ms98-dict.text``: Kaldi's local/swbd1_data_prep.sh (utterance ids ``sw02001-A_000098-001156``,
  ``[silence]``/asides removed, swbd1_map_words.pl, acronyms from the dictionary as swbd1_prepare_dict.sh
  finds them, lower case); the first 4000 utterances are the dev set (s5c's train_dev), the rest train_nodev.
- Fisher (LDC2004T19, LDC2005T19) ``data/trans/*/*.txt``: local/swbd1_train_lms.sh + fisher_map_words.pl,
  then the pytorchnn hesitation mapping.
- eval2000 references (LDC2002T43) ``2000_hub5_eng_eval_tr/reference/hub5e00.english.000405.stm``: Kaldi's
  local/eval2000_data_prep.sh text (ids ``en_4156-A_030185-030248``, words from the 7th field, ``;;``
  comments and IGNORE_TIME_SEGMENT_ lines dropped).
Then the pytorchnn layout of ``swbd_layout``. The transcripts are read directly (lhotse's Switchboard and Fisher
recipes need the audio, which LM text does not); ``lhotse_swbd`` reads the same text from lhotse manifests.
Kaldi's local/dict.patch (a few fixes to the dictionary) is not applied; pass Kaldi's ``data/lang/words.txt`` as
``words`` to get exactly its vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.text.fisher import fisher_lm_lines, map_hesitations
from asr_lm_quant.kaldi.symbols import unknown_word
from asr_lm_quant.text.swbd_layout import (Utterance, lm_lines, lm_vocabulary, read_symbol_table,
                                           write_swbd_lm_text)
from asr_lm_quant.text.swbd_words import (find_acronyms, lexicon_words, map_acronyms, map_swbd_words,
                                          read_ms98_lexicon)
from asr_lm_quant.textio import check_exists, read_lines, split_fields

SWBD_DEV_UTTERANCES = 4000  # s5c run.sh: utils/subset_data_dir.sh --first data/train 4000 data/train_dev
EVAL2000_STM = "reference/hub5e00.english.000405.stm"

MS98_SEGMENT_ID = re.compile(r"^sw\d{4}[AB]-ms98-a-\d+$")
_SILENCE = re.compile(r"\s\[SILENCE\](\s|$)", re.I | re.A)  # ASCII \s, as Perl on bytes
_B_ASIDE = re.compile(r"<B_ASIDE>", re.I)
_E_ASIDE = re.compile(r"<E_ASIDE>", re.I)


def ms98_transcript_files(trans_dir) -> list[Path]:
    d = Path(trans_dir)
    if not d.is_dir():
        raise InputError(d, "Switchboard ms98 transcript directory does not exist")
    files = sorted(d.glob("*/*/*-trans.text"), key=lambda p: str(p.relative_to(d)).encode("utf-8"))
    if not files:
        raise InputError(d, "no */*/*-trans.text files (expected swb_ms98_transcriptions)")
    return files


def _centiseconds(value) -> int:
    return int(100 * float(value) + 0.5)


def ms98_utterance(segment_id: str, start, end, words: list[str], acronyms: dict[str, str],
                   where=None) -> Utterance | None:
    """One ms98 segment (``sw2001A-ms98-a-0002``, start and end in seconds, its words) as Kaldi's
    data/train/text has it, or None when nothing but silence and aside marks is left."""
    utt_id = "sw0" + segment_id[2:6] + f"-{segment_id[6]}_{_centiseconds(start):06d}-{_centiseconds(end):06d}"
    text = " ".join([utt_id] + words) + "\n"
    # The same substitutions as the data prep's perl one-liner, on the whole line (with its newline).
    text = _E_ASIDE.sub("", _B_ASIDE.sub("", _SILENCE.sub(r"\1", text)))
    fields = split_fields(text)
    if len(fields) <= 1:
        return None
    return Utterance(fields[0], " ".join(map_acronyms(map_swbd_words(fields[1:]), acronyms)), where)


def sort_utterances(utts: list[Utterance]) -> list[Utterance]:
    """Kaldi's ``sort`` of a data directory's text (C locale, whole lines)."""
    return sorted(utts, key=lambda u: u.line().encode("utf-8"))


def read_ms98_transcripts(trans_dir, acronyms: dict[str, str]) -> list[Utterance]:
    """Kaldi's data/train/text from the ms98 transcripts, sorted by utterance id."""
    utts = []
    for path in ms98_transcript_files(trans_dir):
        for n, line in read_lines(path):
            fields = split_fields(line)
            if not fields:
                continue
            if len(fields) < 3 or not MS98_SEGMENT_ID.match(fields[0]):
                raise InputError(path, f"expected 'sw2001A-ms98-a-0001 start end words', got {line[:60]!r}",
                                 line=n)
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise InputError(path, f"bad start/end time in {line[:60]!r}", line=n) from None
            utt = ms98_utterance(fields[0], start, end, fields[3:], acronyms, (path, n))
            if utt is not None:
                utts.append(utt)
    return sort_utterances(utts)


def find_eval2000_stm(path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    for cand in (p / EVAL2000_STM, p / "2000_hub5_eng_eval_tr" / EVAL2000_STM):
        if cand.is_file():
            return cand
    raise InputError(p, f"cannot find the eval2000 references ({EVAL2000_STM}, or give the .stm file)")


def eval2000_utt_id(conversation: str, side: str, start, end) -> str:
    """Kaldi's eval2000 utterance id (``en_4156-A_030185-030248``): times truncated to centiseconds."""
    return f"{conversation}-{side}_{int(float(start) * 100):06d}-{int(float(end) * 100):06d}"


def scored_eval2000(utts: list[Utterance]) -> list[Utterance]:
    """Without the segments NIST does not score, sorted as Kaldi's data/eval2000/text."""
    return sort_utterances([u for u in utts if "IGNORE_TIME_SEGMENT_" not in u.line()])


def read_eval2000_stm(stm) -> list[Utterance]:
    """Kaldi's data/eval2000/text from the Hub5 stm (``en_4156 A en_4156_A 357.64 359.64 <O,en,F,en-F>  HE IS``)."""
    utts = []
    for n, line in read_lines(stm):
        if ";;" in line:
            continue
        fields = split_fields(line)
        if not fields:
            continue
        if len(fields) < 6:
            raise InputError(stm, f"expected 'file channel speaker start end <labels> words', got {line[:60]!r}",
                             line=n)
        try:
            utt_id = eval2000_utt_id(fields[0], fields[1], fields[3], fields[4])
        except ValueError:
            raise InputError(stm, f"bad start/end time in {line[:60]!r}", line=n) from None
        utts.append(Utterance(utt_id, " ".join(fields[6:]), (stm, n)))
    utts = scored_eval2000(utts)
    if not utts:
        raise InputError(stm, "no utterances")
    return utts


def read_dictionary(dictionary) -> tuple[list, dict[str, str]]:
    """``(lexicon, acronyms)`` of sw-ms98-dict.text."""
    lexicon = list(read_ms98_lexicon(read_lines(dictionary)))
    if not lexicon:
        raise InputError(dictionary, "no dictionary entries")
    return lexicon, find_acronyms(lexicon)


def swbd_vocabulary(lexicon, acronyms, words=None, unk: str | None = None):
    """The given words.txt, else the words of Kaldi's lexicon built from the dictionary, plus <s> </s>."""
    if words:
        return lm_vocabulary(read_symbol_table(words), source=words, unk=unknown_word(words, unk))
    return lm_vocabulary(lexicon_words(lexicon, acronyms) + ["<s>", "</s>"])


def dev_split(swbd: list[Utterance], dev_utterances: int | None, source) -> int:
    """How many of the (sorted) Switchboard utterances make the dev set, as s5c's train_dev."""
    n_dev = SWBD_DEV_UTTERANCES if dev_utterances is None else dev_utterances
    if not 0 < n_dev < len(swbd):
        raise InputError(source, f"cannot hold out {n_dev} of {len(swbd)} utterances as the dev set")
    return n_dev


def prepare_ldc_swbd(swbd_trans, out_dir, *, fisher_dirs=(), eval2000=None, dev_utterances: int | None = None,
                     words=None, dictionary=None, unk: str | None = None, overwrite: bool = False) -> dict:
    """Write train/valid/test.txt, words.txt and stats.json into ``out_dir`` from the LDC layouts.

    ``dictionary`` defaults to ``<swbd_trans>/sw-ms98-dict.text``; ``words`` (a words.txt) overrides the
    vocabulary built from it. Without ``eval2000`` there is no test set: that is an error, as for Kaldi.
    """
    trans = Path(swbd_trans)
    dictionary = Path(dictionary) if dictionary else trans / "sw-ms98-dict.text"
    check_exists(dictionary)
    if eval2000 is None:
        raise InputError(None, "the eval2000 references (--eval2000) are needed for test.txt")
    stm = find_eval2000_stm(eval2000)
    lexicon, acronyms = read_dictionary(dictionary)
    vocab = swbd_vocabulary(lexicon, acronyms, words, unk)
    swbd = read_ms98_transcripts(trans, acronyms)
    n_dev = dev_split(swbd, dev_utterances, trans)
    fisher_dirs = [Path(d) for d in fisher_dirs]
    for d in fisher_dirs:  # fail before writing anything
        check_exists(d)
    info = {"source": "ldc-swbd",
            "inputs": {"train": str(trans), "valid": str(trans), "test": str(stm), "dictionary": str(dictionary),
                       "fisher": [str(d) for d in fisher_dirs], "words": str(words) if words else None},
            "dev_utterances": n_dev, "acronyms": len(acronyms)}
    fisher = (map_hesitations(line) for line in fisher_lm_lines(fisher_dirs)) if fisher_dirs else None
    return write_swbd_lm_text(out_dir, train=lm_lines(swbd[n_dev:]), valid=lm_lines(swbd[:n_dev]),
                              test=lm_lines(read_eval2000_stm(stm)), fisher_lines=fisher, vocab=vocab,
                              info=info, overwrite=overwrite)
