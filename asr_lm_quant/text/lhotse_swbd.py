"""Switchboard LM text from lhotse supervision manifests, normalised exactly as the LDC route (``ldc``) does.

What lhotse's recipes (1.32) put in a supervision's ``text``, and what is done with it here:

- ``lhotse prepare switchboard``: the words of each ms98 ``*-trans.text`` line, unchanged (``[noise]``,
  ``[laughter-yes]-``, ``ab[solute]-``, ``{yuppiedom}``, ``them_1``, ``<b_aside>``, upper/lower case as
  transcribed), joined by single spaces; the supervision id is the ms98 segment id (``sw2001A-ms98-a-0002``),
  start and duration its times. Nothing is normalised, so Kaldi's swbd1_data_prep.sh mapping is applied as
  for the LDC files. One difference: with its default ``--omit-silence`` the recipe drops every segment whose
  *first* word is ``[silence]``, where Kaldi only drops lines left empty once ``[silence]`` and the asides are
  removed (``[silence] okay`` stays ``okay``). Prepare with ``--retain-silence`` to get Kaldi's text.
- ``lhotse prepare fisher-english``: the words of each ``data/trans/*/*.txt`` line after its ``start end side:``
  fields, unchanged, runs of spaces collapsed; the first three lines of every file are taken as its header.
  fisher_map_words.pl and the hesitation mapping are applied, to the supervisions in manifest order (the
  recipe's order is Kaldi's: files sorted by path, lines in file order). fisher_map_words.pl sees spaces,
  so a line with runs of spaces can map differently (Kaldi's own text keeps them).
- ``lhotse prepare eval2000``: the LDC2002T43 ``reference/english/*.txt`` transcripts with their markup
  (``<contraction e_form=...>``, ``{breath}``, ``%um,``, punctuation), not the NIST stm that Kaldi and the
  scoring use. The stm cannot be recovered from it, so such a manifest is refused; give the stm instead, or
  a manifest whose text holds the stm words (Kaldi's data/eval2000 imported with ``lhotse kaldi import``, as
  icefall's swbd recipe does).

icefall's swbd recipe trains on Kaldi's data/local/train imported with ``lhotse kaldi import``: that text is
already normalised and its ids are Kaldi's (``sw02001-A_000098-001156``), so it is refused as the Switchboard
manifest here; use it through the kaldi-swbd source. Its local/normalize_and_filter_supervisions.py output
keeps the ms98 ids but normalises in its own way (no ``[noise]`` mapping, dashes removed): give the manifest
that ``lhotse prepare switchboard`` wrote, not that one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.text.fisher import map_fisher_texts, map_hesitations
from asr_lm_quant.textio import check_exists, split_fields
from asr_lm_quant.text.ldc import (MS98_SEGMENT_ID, dev_split, eval2000_utt_id, find_eval2000_stm,
                                   ms98_utterance, read_dictionary, read_eval2000_stm, scored_eval2000,
                                   sort_utterances, swbd_vocabulary)
from asr_lm_quant.text.swbd_layout import Utterance, lm_lines, utterance_key, write_swbd_lm_text

# Markup of the raw LDC2002T43 transcripts that the NIST stm never has.
_RAW_EVAL2000 = re.compile(r"<contraction|[{}]|(?<!\()%")
_SIDES = {0: "A", 1: "B"}


def is_manifest(path) -> bool:
    return ".jsonl" in Path(path).suffixes


def open_supervisions(path):
    """The lazily read ``SupervisionSet`` of a lhotse manifest (``.jsonl``/``.jsonl.gz``); anything else is an
    InputError here, before any output is written."""
    from lhotse import SupervisionSet, load_manifest_lazy
    from lhotse.serialization import NotALhotseManifest

    path = Path(path)
    check_exists(path)
    if not is_manifest(path):
        raise InputError(path, "expected a lhotse supervision manifest (.jsonl or .jsonl.gz)")
    try:
        manifest = load_manifest_lazy(path)
    except (ValueError, TypeError, KeyError, OSError, EOFError, NotALhotseManifest) as e:
        raise InputError(path, f"not a lhotse manifest ({_reason(e)})", line=1) from None
    if manifest is None:
        raise InputError(path, "empty manifest (no supervisions)")
    if not isinstance(manifest, SupervisionSet):
        raise InputError(path, f"is a {type(manifest).__name__} manifest, expected supervisions (a SupervisionSet)")
    return manifest


def _reason(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON: {e.msg}"
    return str(e) or type(e).__name__


def supervisions(path, manifest):
    """``(line, supervision)`` for each supervision of an opened manifest; each must have a text."""
    from lhotse import SupervisionSegment
    from lhotse.serialization import NotALhotseManifest

    items = iter(manifest)
    n = 0
    while True:
        n += 1
        try:
            sup = next(items)
        except StopIteration:
            return
        except (ValueError, TypeError, KeyError, OSError, EOFError, NotALhotseManifest) as e:
            raise InputError(path, f"not a lhotse supervision ({_reason(e)})", line=n) from None
        if not isinstance(sup, SupervisionSegment):
            raise InputError(path, f"a {type(sup).__name__}, not a supervision segment", line=n)
        _check_types(path, n, sup)
        yield n, sup


def _check_types(path, n: int, sup) -> None:
    """lhotse reads a manifest's fields as the JSON has them: a field of the wrong type is named here, before
    any use (``start`` a string, ``text`` a number...)."""
    key = sup.id if isinstance(sup.id, str) else None
    if not isinstance(sup.id, str) or not sup.id:
        raise InputError(path, f"supervision id is {sup.id!r}: expected a non-empty string", line=n)
    if sup.text is None:
        raise InputError(path, "supervision has no text", line=n, key=key)
    if not isinstance(sup.text, str):
        raise InputError(path, f"text is a {type(sup.text).__name__} ({sup.text!r}): expected a string", line=n,
                         key=key)
    if not isinstance(sup.recording_id, str):
        raise InputError(path, f"recording_id is {sup.recording_id!r}: expected a string", line=n, key=key)
    for field in ("start", "duration"):
        v = getattr(sup, field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            raise InputError(path, f"{field} is {v!r}: expected a finite number of seconds", line=n, key=key)
    if sup.duration < 0:
        raise InputError(path, f"duration is {sup.duration!r}: negative", line=n, key=key)
    if sup.channel is not None and (isinstance(sup.channel, bool) or not isinstance(sup.channel, (int, list))):
        raise InputError(path, f"channel is {sup.channel!r}: expected an integer", line=n, key=key)


def _end(sup) -> float:
    # lhotse keeps start as read and rounds the duration to 8 decimals: this gives back the transcript's end.
    return round(sup.start + sup.duration, 8)


def read_swbd_supervisions(path, acronyms: dict[str, str]) -> list[Utterance]:
    """Kaldi's data/train/text from a ``lhotse prepare switchboard`` manifest, sorted by utterance id."""
    utts = []
    for n, sup in supervisions(path, open_supervisions(path)):
        if not MS98_SEGMENT_ID.match(sup.id):
            raise InputError(path, "not an ms98 segment id (sw2001A-ms98-a-0001, as 'lhotse prepare switchboard' "
                                   "writes them); text imported from a Kaldi data directory is normalised "
                                   "already: use the kaldi-swbd source", line=n, key=sup.id)
        utt = ms98_utterance(sup.id, sup.start, _end(sup), split_fields(sup.text), acronyms, (path, n))
        if utt is not None:
            utts.append(utt)
    return sort_utterances(utts)


def read_eval2000_supervisions(path) -> list[Utterance]:
    """Kaldi's data/eval2000/text from a manifest whose texts are the stm words."""
    utts = []
    for n, sup in supervisions(path, open_supervisions(path)):
        if _RAW_EVAL2000.search(sup.text):
            raise InputError(path, "text has the markup of the raw LDC2002T43 transcripts ('lhotse prepare "
                                   "eval2000' copies them; the stm has none): give the LDC2002T43 directory or "
                                   "its .stm, or a manifest of Kaldi's data/eval2000", line=n, key=sup.id)
        if utterance_key(sup.id) is not None:
            utt_id = sup.id  # Kaldi's own id (lhotse kaldi import)
        elif sup.channel in _SIDES:
            utt_id = eval2000_utt_id(sup.recording_id, _SIDES[sup.channel], sup.start, _end(sup))
        else:
            raise InputError(path, f"channel {sup.channel!r}: expected 0 (side A) or 1 (side B)", line=n,
                             key=sup.id)
        utts.append(Utterance(utt_id, " ".join(split_fields(sup.text)), (path, n)))
    utts = scored_eval2000(utts)
    if not utts:
        raise InputError(path, "no scored utterances")
    return utts


def fisher_supervision_lines(manifests):
    """Fisher LM text lines (fisher_map_words.pl, then the hesitation mapping) from opened manifests."""
    texts = (sup.text for path, manifest in manifests for _, sup in supervisions(path, manifest))
    for line in map_fisher_texts(texts):
        yield map_hesitations(line)


def prepare_lhotse_swbd(swbd_supervisions, out_dir, *, dictionary, eval2000, fisher=(),
                        dev_utterances: int | None = None, words=None, unk: str | None = None,
                        overwrite: bool = False) -> dict:
    """Write train/valid/test.txt, words.txt and stats.json into ``out_dir`` from lhotse manifests.

    ``swbd_supervisions``: a ``lhotse prepare switchboard`` supervision manifest; ``dictionary``: its
    sw-ms98-dict.text (lhotse does not keep it; it comes with the ms98 transcripts); ``eval2000``: a manifest
    of stm words, or the LDC2002T43 directory or its .stm; ``fisher``: ``lhotse prepare fisher-english``
    supervision manifests.
    """
    swbd_path = Path(swbd_supervisions)
    dictionary = Path(dictionary)
    check_exists(dictionary)
    if eval2000 is None:
        raise InputError(None, "the eval2000 references (--eval2000) are needed for test.txt")
    lexicon, acronyms = read_dictionary(dictionary)
    vocab = swbd_vocabulary(lexicon, acronyms, words, unk)
    swbd = read_swbd_supervisions(swbd_path, acronyms)
    n_dev = dev_split(swbd, dev_utterances, swbd_path)
    if is_manifest(eval2000):
        test_path, test = Path(eval2000), read_eval2000_supervisions(eval2000)
    else:
        test_path = find_eval2000_stm(eval2000)
        test = read_eval2000_stm(test_path)
    fisher_manifests = [(Path(p), open_supervisions(p)) for p in fisher]  # checked before writing anything
    info = {"source": "lhotse-swbd",
            "inputs": {"train": str(swbd_path), "valid": str(swbd_path), "test": str(test_path),
                       "dictionary": str(dictionary), "fisher": [str(p) for p, _ in fisher_manifests],
                       "words": str(words) if words else None},
            "dev_utterances": n_dev, "acronyms": len(acronyms)}
    return write_swbd_lm_text(out_dir, train=lm_lines(swbd[n_dev:]), valid=lm_lines(swbd[:n_dev]),
                              test=lm_lines(test), fisher_lines=fisher_supervision_lines(fisher_manifests)
                              if fisher_manifests else None, vocab=vocab, info=info, overwrite=overwrite)
