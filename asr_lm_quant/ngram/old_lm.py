"""The old LM of rescoring (``--old-lm``): an ARPA file, a ``G.fst``, a ``G.carpa`` or a Kaldi lang dir.

* ARPA file (plain or gzip) or kenlm binary: scored with kenlm (:class:`~asr_lm_quant.ngram.arpa.ArpaLM`).
* ``G.fst`` (any OpenFst binary with tropical arcs): :class:`~asr_lm_quant.ngram.kaldi_lm.FstLM`.
* ``G.carpa`` (Kaldi's ConstArpaLm): :class:`~asr_lm_quant.ngram.kaldi_lm.ConstArpaLM`.
* A lang dir (``data/lang_sw1_tg``): its ``G.carpa`` if it has one, else its ``G.fst``, with its ``words.txt``.
  ``G.carpa`` wins as in Kaldi's ``steps/pytorchnn/lmrescore_*_pytorchnn.sh``: Kaldi puts a ``G.carpa`` only in
  lang dirs built for rescoring (``utils/build_const_arpa_lm.sh``), whose ``G.fst``, when there is one, was
  copied from the lang dir it started from and is not the big LM the lattices were rescored with.

``G.fst`` and ``G.carpa`` hold integer word ids: their ``words.txt`` is the lang dir's, or for a file given
alone the ``words.txt`` beside it, else ``words`` (the lattices' symbol table, ``--words``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr_lm_quant.errors import InputError
from asr_lm_quant.ngram.arpa import check_arpa


@dataclass
class OldLMSpec:
    kind: str  # arpa, kenlm, fst or carpa
    path: Path
    words: Path | None  # words.txt for fst and carpa

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "words": str(self.words) if self.words else None}


def resolve_old_lm(spec, words=None) -> OldLMSpec:
    """Which file and symbol table ``spec`` stands for; reads only the first bytes of the LM (cheap)."""
    spec = Path(spec)
    if spec.is_dir():
        lm = next((spec / n for n in ("G.carpa", "G.fst") if (spec / n).is_file()), None)
        if lm is None:
            raise InputError(spec, "is a directory but not a Kaldi lang dir with an LM: it has neither G.carpa nor "
                                   "G.fst")
        lang_words = spec / "words.txt"
        if not lang_words.is_file():
            raise InputError(spec, "Kaldi lang dir without words.txt (needed to read its G.carpa / G.fst)")
        kind = check_arpa(lm)
        if kind != ("carpa" if lm.name == "G.carpa" else "fst"):
            raise InputError(lm, f"is not a {lm.name} (its first bytes say {kind})")
        return OldLMSpec(kind, lm, lang_words)
    kind = check_arpa(spec)
    if kind in ("arpa", "kenlm"):
        return OldLMSpec(kind, spec, None)
    beside = spec.parent / "words.txt"
    if beside.is_file():
        return OldLMSpec(kind, spec, beside)
    if words is None:
        raise InputError(spec, f"a {'G.fst' if kind == 'fst' else 'G.carpa'} needs its words.txt: none beside it; "
                               "give the lang dir, or --words")
    return OldLMSpec(kind, spec, Path(words))


def open_old_lm(spec, words=None):
    """The LM ``spec`` stands for (see the module docstring), ready to score word sequences."""
    from asr_lm_quant.ngram.arpa import ArpaLM
    from asr_lm_quant.ngram.kaldi_lm import ConstArpaLM, FstLM

    r = spec if isinstance(spec, OldLMSpec) else resolve_old_lm(spec, words)
    if r.kind == "fst":
        return FstLM(r.path, r.words)
    if r.kind == "carpa":
        return ConstArpaLM(r.path, r.words)
    return ArpaLM(r.path)
