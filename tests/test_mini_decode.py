"""End to end on real components: festival speaks, pocketsphinx decodes with our 3-gram, and the result is a
Kaldi decode dir whose lattices read back with 3-gram graph costs (skipped without festival)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local" / "mini"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival is not installed")]

SENTENCES = ["the river flows past the old mill", "the old man walked to the river",
             "she sold the mill to the town", "the town council met on monday",
             "the old mill was built in the town"]


def test_synthesise_decode_convert(tmp_path):
    import numpy as np
    from datadir import write_data_dir
    from prepare_test import synthesize

    from asr_lm_quant.decode.decode_dir import decode_job
    from asr_lm_quant.decode.pocketsphinx import read_wav_16k
    from asr_lm_quant.kaldi.algorithms import best_path
    from asr_lm_quant.kaldi.archive import read_decode_dir
    from asr_lm_quant.kaldi.symbols import SymbolTable
    from asr_lm_quant.ngram.arpa import ArpaLM
    from asr_lm_quant.ngram.train import train_arpa

    text = tmp_path / "train.txt"
    text.write_text("\n".join(SENTENCES * 3) + "\n")
    train_arpa(text, tmp_path / "lm.arpa", order=3)
    words = sorted({w for s in SENTENCES for w in s.split()})
    SymbolTable.from_words(words + ["<unk>"]).save(tmp_path / "words.txt")

    ref = SENTENCES[0].split()
    cache = tmp_path / "cache"
    wav = synthesize(" ".join(ref), "cmu_us_slt_arctic_hts", None, "0:slt-000001", cache)
    assert synthesize(" ".join(ref), "cmu_us_slt_arctic_hts", None, "0:slt-000001", cache) == wav  # cached
    x = read_wav_16k(wav)
    assert x.dtype == np.int16 and 1.0 < len(x) / 16000 < 10.0
    noisy = synthesize(" ".join(ref), "cmu_us_slt_arctic_hts", 20.0, "0:slt-000001", cache)
    y = read_wav_16k(noisy).astype(float)
    snr = 10 * np.log10(np.mean(x.astype(float) ** 2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(20.0, abs=0.5)

    write_data_dir(tmp_path / "data", [("slt-000001", "slt", ref, wav)])
    dec = tmp_path / "decode"
    stats = decode_job(tmp_path / "data", tmp_path / "lm.arpa", tmp_path / "words.txt", dec, job=1, nj=1,
                       cache_dir=tmp_path / "latcache")
    assert stats["utterances"] == 1 and stats["arcs"] > 0
    assert json.loads((dec / "stats.1.json").read_text())["acoustic_scale"] == pytest.approx(10 / 6.5)
    (dec / "num_jobs").write_text("1\n")
    (key, lat), = list(read_decode_dir(dec))
    assert key == "slt-000001" and lat.compact
    sym = SymbolTable.load(tmp_path / "words.txt")
    path = best_path(lat, acoustic_scale=0.1)
    hyp = sym.words([w for w in path.words if w])
    assert hyp == ref
    lm = ArpaLM(tmp_path / "lm.arpa")
    assert path.graph_cost == pytest.approx(lm.sentence_cost(hyp), abs=1e-3)
    assert (dec / "ps_hyp.1").read_text().split()[0] == "slt-000001"
    # the lattice and the 1-best are cached by content for the next run
    assert len(list((tmp_path / "latcache").glob("*/*.lat.gz"))) == 1
    assert len(list((tmp_path / "latcache").glob("*/*.hyp"))) == 1
