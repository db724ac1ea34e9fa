#!/usr/bin/env python3
"""Mini recipe: data/lang/words.txt (Kaldi layout: <eps> 0, sorted words, #0 <s> </s>) from the LM vocabulary."""

import argparse
import sys

from asr_lm_quant.errors import InputError
from asr_lm_quant.kaldi.symbols import SymbolTable
from asr_lm_quant.text.vocab import Vocabulary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("vocab", help="LM words.txt (data/lm/words.txt)")
    p.add_argument("lang", help="output lang dir (data/lang)")
    a = p.parse_args(argv)
    table = SymbolTable.from_words(Vocabulary.load(a.vocab).words)
    table.save(f"{a.lang}/words.txt")
    print(f"{a.lang}/words.txt: {len(table)} symbols")


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        sys.exit(f"make_lang.py: error: {e}")
