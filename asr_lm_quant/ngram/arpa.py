"""Back-off n-gram LMs in ARPA format, scored with kenlm.

Costs are negated natural logs (Kaldi's convention); ARPA files and kenlm speak log10, so every
score is multiplied by ln(10). Sentences start with ``<s>`` and end with ``</s>`` as ARPA files expect.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import check_readable_once, read_lines, split_fields

log = logging.getLogger(__name__)
LN10 = math.log(10.0)
UNK = "<unk>"


def _load_kenlm():
    import kenlm  # imported lazily: loading is slow and most commands never need it
    return kenlm


def _arpa_unigram_words(path: Path, needed: set[str]) -> set[str]:
    """Which of ``needed`` are listed as 1-grams in the ARPA file (reads the 1-gram section only)."""
    found = set()
    in_unigrams = False
    for _, line in read_lines(path):
        fields = split_fields(line)
        if fields == ["\\1-grams:"]:
            in_unigrams = True
            continue
        if in_unigrams:
            if fields and fields[0].startswith("\\"):
                break
            if len(fields) >= 2 and fields[1] in needed:
                found.add(fields[1])
    return found


@contextlib.contextmanager
def _quiet_stderr():
    """Send what C++ code writes to file descriptor 2 to a temporary file for the block (its text is
    logged at debug level)."""
    import tempfile
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("kenlm: %s", text)


def check_arpa(path) -> str:
    """What kind of n-gram LM file ``path`` is, from its first bytes: ``"arpa"`` (plain or gzip), ``"kenlm"``
    (kenlm's binary), ``"fst"`` (an OpenFst binary: ``G.fst``) or ``"carpa"`` (Kaldi's ConstArpaLm,
    ``G.carpa``); anything else stops with a clear message.

    Kaldi users often have ``G.fst`` or ``G.carpa`` at hand rather than the ARPA file they were built from:
    those are old LMs too (:func:`asr_lm_quant.ngram.old_lm.open_old_lm`), but not for kenlm.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "LM file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, not an LM file")
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            if head[:2] == b"\x1f\x8b":
                import gzip
                f.seek(0)
                with gzip.GzipFile(fileobj=f) as g:
                    head = g.read(1 << 16)
    except (OSError, EOFError) as e:
        raise InputError(path, f"cannot read ({e})") from None
    if head.startswith(b"mmap lm "):
        return "kenlm"
    if head[:4] == b"\xd6\xfd\xb2\x7e":
        return "fst"
    if head.startswith(b"\0B<ConstArpaLm> ") or head.startswith(b"\0B\x04"):
        return "carpa"
    if head[:2] == b"\0B":
        raise InputError(path, "is a Kaldi binary object but not a ConstArpaLm (G.carpa): not an n-gram LM")
    text = head.decode("utf-8", errors="replace")
    if "\\data\\" not in text:
        raise InputError(path, "is not an n-gram LM: no ARPA '\\data\\' header in its first 64 KB, and not a "
                               "G.fst, G.carpa or kenlm binary")
    return "arpa"


class ArpaLM:
    """An ARPA back-off LM.

    ``sentence_cost(words)`` is the cost of ``<s> words </s>``; ``begin_state``/``word_cost``/``end_cost``
    score word by word for search and rescoring. Words outside the LM's vocabulary are scored as
    ``<unk>`` (kenlm's behaviour); :meth:`is_oov` tells which words those are.
    """

    semantics = "arpa"  # the back-off walk, as Kaldi's const-ARPA rescoring

    def __init__(self, path):
        self.path = Path(path)
        kind = check_arpa(self.path)
        if kind in ("fst", "carpa"):
            raise InputError(self.path, f"is a {'G.fst' if kind == 'fst' else 'G.carpa'}, not an ARPA LM: this needs "
                                        "the ARPA file (rescoring's --old-lm and 'asr-lm-quant old-lm' take "
                                        "G.fst and G.carpa too)")
        kenlm = _load_kenlm()
        try:
            with _quiet_stderr():  # kenlm reports its loading progress on stderr, every time
                self._model = kenlm.Model(str(self.path))
        except (OSError, RuntimeError, UnicodeDecodeError, ValueError) as e:
            raise InputError(self.path, f"cannot read as an ARPA LM: {e}") from None
        self._kenlm = kenlm
        self.order = int(self._model.order)
        # kenlm gives <unk> log10 prob -100 when the file lacks it; OOVs then cannot be counted fairly.
        self.has_unk = UNK in _arpa_unigram_words(self.path, {UNK})

    def is_oov(self, word: str) -> bool:
        """True for words the LM scores as ``<unk>`` (a literal ``<unk>`` counts as known when listed)."""
        if word == UNK:
            return not self.has_unk
        return bool(word not in self._model)

    def sentence_cost(self, words) -> float:
        """Cost (negated natural log) of the whole sentence with ``<s>`` and ``</s>``."""
        if isinstance(words, str):
            words = split_fields(words)
        return -self._model.score(" ".join(words), bos=True, eos=True) * LN10

    def begin_state(self):
        state = self._kenlm.State()
        self._model.BeginSentenceWrite(state)
        return state

    def null_state(self):
        """A state with no history (for scoring text that does not start a sentence)."""
        state = self._kenlm.State()
        self._model.NullContextWrite(state)
        return state

    def word_cost(self, state, word: str):
        """``(cost_nats, new_state)`` of ``word`` after ``state``; ``state`` is not changed."""
        out = self._kenlm.State()
        log10p = self._model.BaseScore(state, word, out)
        return -log10p * LN10, out

    def end_cost(self, state) -> float:
        """Cost of ``</s>`` after ``state``."""
        return self.word_cost(state, "</s>")[0]

    def word_costs(self, words, eos: bool = True) -> list[float]:
        """Per-word costs of ``<s> words`` (and ``</s>`` last when ``eos``)."""
        if isinstance(words, str):
            words = split_fields(words)
        costs = [-lp * LN10 for lp, _, _ in self._model.full_scores(" ".join(words), bos=True, eos=eos)]
        return costs

    def perplexity_file(self, path, skip_oov: bool | None = None) -> dict:
        """Perplexity over a text file, one sentence per line (empty lines skipped).

        ``ppl`` counts every word and each end-of-sentence; ``ppl_no_eos`` leaves the end-of-sentence
        tokens out. OOV words are scored as ``<unk>`` and counted, unless ``skip_oov`` (the default when
        the LM has no ``<unk>``), in which case they are left out of both the sum and the count, as SRILM does.
        """
        path = Path(path)
        check_readable_once(path, "text file")
        if skip_oov is None:
            skip_oov = not self.has_unk
        total = total_eos = 0.0
        n_words = n_sent = n_oov = n_counted = 0
        for _, line in read_lines(path):
            words = split_fields(line)
            if not words:
                continue
            costs = self.word_costs(words, eos=True)
            n_sent += 1
            n_words += len(words)
            for w, c in zip(words, costs):
                if self.is_oov(w):
                    n_oov += 1
                    if skip_oov:
                        continue
                total += c
                n_counted += 1
            total_eos += costs[-1]
        if n_sent == 0:
            raise InputError(path, "no sentences to score")
        return {
            "ppl": math.exp((total + total_eos) / (n_counted + n_sent)),
            "ppl_no_eos": math.exp(total / n_counted) if n_counted else float("nan"),
            "cost": total + total_eos,
            "oov": n_oov,
            "words": n_words,
            "sentences": n_sent,
            "tokens_scored": n_counted + n_sent,
            "oov_skipped": bool(skip_oov),
        }
