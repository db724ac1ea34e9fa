"""The toolkit's own n-best format (TSV or JSON lines, one hypothesis a row): see
:mod:`asr_lm_quant.kaldi.nbest`, which writes it too."""

from asr_lm_quant.kaldi.nbest import iter_ours
from asr_lm_quant.nbest.formats import Format


def detect(item, is_line) -> bool:
    keys = set(item)
    return is_line and ({"utterance", "rank"} <= keys or bool(keys & {"acoustic_cost", "lm_cost"}))


FORMAT = Format(name="ours", help="TSV/JSONL", read=iter_ours, detect=detect, suffixes=(".tsv",),
                references=True)  # JSON lines carry them (rescore-nbest passes its input's on)
