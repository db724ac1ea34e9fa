"""The old LM of rescoring (``--old-lm``): an ARPA file, a ``G.fst``, a ``G.carpa`` or a Kaldi lang dir.

* ARPA file (plain or gzip) or kenlm binary: scored with kenlm (:class:`~asr_lm_quant.ngram.arpa.ArpaLM`).
* ``G.fst`` (any OpenFst binary with tropical arcs): :class:`~asr_lm_quant.ngram.kaldi_lm.FstLM`.
* ``G.carpa`` (Kaldi's ConstArpaLm): :class:`~asr_lm_quant.ngram.kaldi_lm.ConstArpaLM`.
* A lang dir (``data/lang_sw1_tg``): its ``G.carpa`` if it has one, else its ``G.fst``, with its ``words.txt``.
  ``G.carpa`` wins as in Kaldi's ``steps/pytorchnn/lmrescore_*_pytorchnn.sh``: Kaldi puts a ``G.carpa`` only in
  lang dirs built for rescoring (``utils/build_const_arpa_lm.sh``), whose ``G.fst``, when there is one, was
  copied from the lang dir it started from and is not the big LM the lattices were rescored with.

Which cost is removed (``semantics`` in :meth:`OldLMSpec.describe`): for a ``G.fst`` by default the cheapest
path through G with its ``#0`` back-off arcs taken as epsilons ("min-over-paths"), the cost lattices made by
decoding hold and the one Kaldi's ``lattice-lmrescore`` removes (its pytorchnn scripts' default
``--use-phi false``); with ``use_phi`` the ARPA back-off walk ("arpa", Kaldi's ``--use-phi true``). ARPA files
and ``G.carpa`` always use the ARPA walk, as ``lattice-lmrescore-const-arpa`` does.

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
    use_phi: bool = False  # G.fst only: the ARPA back-off walk instead of the min-over-paths cost

    @property
    def semantics(self) -> str:
        return "min-over-paths" if self.kind == "fst" and not self.use_phi else "arpa"

    def describe(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "words": str(self.words) if self.words else None,
                "semantics": self.semantics}


SEMANTICS_NOTE = {"min-over-paths": "cheapest path through G, #0 back-off arcs as epsilons (the decoder's cost; "
                                    "Kaldi's --use-phi false)",
                  "arpa": "ARPA back-off walk (failure arcs; Kaldi's --use-phi true, const-ARPA rescoring)"}


def parse_use_phi(value) -> bool:
    """Kaldi's ``--use-phi`` value: true/false (also 1/0, yes/no)."""
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise InputError(None, f"--use-phi {value!r}: expected true or false")


def resolve_old_lm(spec, words=None, use_phi=False) -> OldLMSpec:
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
        return OldLMSpec(kind, lm, lang_words, parse_use_phi(use_phi))
    kind = check_arpa(spec)
    if kind in ("arpa", "kenlm"):
        return OldLMSpec(kind, spec, None, parse_use_phi(use_phi))
    beside = spec.parent / "words.txt"
    if beside.is_file():
        return OldLMSpec(kind, spec, beside, parse_use_phi(use_phi))
    if words is None:
        raise InputError(spec, f"a {'G.fst' if kind == 'fst' else 'G.carpa'} needs its words.txt: none beside it; "
                               "give the lang dir, or --words")
    return OldLMSpec(kind, spec, Path(words), parse_use_phi(use_phi))


def open_old_lm(spec, words=None, use_phi=False):
    """The LM ``spec`` stands for (see the module docstring), ready to score word sequences; ``use_phi`` (a
    G.fst only) removes the ARPA back-off walk's cost instead of the min-over-paths cost."""
    from asr_lm_quant.ngram.arpa import ArpaLM
    from asr_lm_quant.ngram.kaldi_lm import ConstArpaLM, FstLM

    r = spec if isinstance(spec, OldLMSpec) else resolve_old_lm(spec, words, use_phi)
    if r.kind == "fst":
        return FstLM(r.path, r.words, use_phi=r.use_phi)
    if r.kind == "carpa":
        return ConstArpaLM(r.path, r.words)
    return ArpaLM(r.path)
