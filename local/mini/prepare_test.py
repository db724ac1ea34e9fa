#!/usr/bin/env python3
"""Mini recipe, stage 2a: pick test sentences, synthesise them with festival, write data/test.

Sentences come from the normalised WikiText-2 test split: 5..25 words, no <unk>, every word in the LM
vocabulary, preferably all in the pocketsphinx dictionary too (see select_sentences); a seeded random choice
of --num of them, kept in corpus order. Voices alternate across utterances (each voice is a Kaldi speaker). Audio: festival's text2wave,
resampled to 16 kHz mono 16-bit, optional white noise at --snr dB. Each waveform is cached under
--cache-dir by a hash of everything that determines it, so re-runs and other experiment dirs reuse it.

Writes <data>/{text,wav.scp,utt2spk,spk2utt,voices} and <data>/wav/<utt>.wav (hard links into the cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datadir import write_data_dir  # noqa: E402

from asr_lm_quant.decode.pocketsphinx import dictionary_words  # noqa: E402
from asr_lm_quant.errors import InputError  # noqa: E402
from asr_lm_quant.text.vocab import Vocabulary  # noqa: E402

VOICES = {"slt": "cmu_us_slt_arctic_hts", "kal": "kal_diphone", "ked": "ked_diphone"}


def select_sentences(test_txt, vocab_words, dict_words, *, num, min_words=5, max_words=25, seed=0):
    """``[(line_number, words)]``: a seeded choice of ``num`` eligible test sentences in corpus order.

    Eligible: ``min_words``..``max_words`` words, all in the LM vocabulary (no ``<unk>``). Sentences whose words
    all have a pronunciation in the recogniser's dictionary come first; when there are fewer than ``num`` of
    those (WikiText-2's test split has about 480 at 5-25 words), the rest are drawn from sentences with a word
    the recogniser cannot output: an error every system makes alike, as a real out-of-vocabulary word is.
    """
    decodable, other = [], []
    with open(test_txt, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            words = line.split()
            if not min_words <= len(words) <= max_words:
                continue
            if all(w != "<unk>" and w in vocab_words for w in words):
                (decodable if all(w in dict_words for w in words) else other).append((n, words))
    if len(decodable) + len(other) < num:
        raise InputError(test_txt, f"only {len(decodable) + len(other)} eligible sentences, {num} requested")
    rng = random.Random(seed)
    chosen = [decodable[i] for i in rng.sample(range(len(decodable)), min(num, len(decodable)))]
    if len(chosen) < num:
        chosen += [other[i] for i in rng.sample(range(len(other)), num - len(chosen))]
    return sorted(chosen)


def synthesize(text: str, voice: str, snr, seed_key: str, cache_dir: Path) -> Path:
    """A 16 kHz mono 16-bit WAV of ``text`` spoken by festival ``voice`` (cached by content)."""
    key = hashlib.sha1(json.dumps([text, voice, snr, seed_key, 16000, 1]).encode()).hexdigest()
    out = cache_dir / key[:2] / f"{key}.wav"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        txt, raw = Path(tmp) / "u.txt", Path(tmp) / "u.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        r = subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(raw), str(txt)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not raw.exists():
            raise RuntimeError(f"text2wave failed for voice {voice}: {r.stderr.strip()[-300:]}")
        rate, x = wavfile.read(raw)
        x = x.astype(np.float64)
        if x.ndim > 1:
            x = x.mean(axis=1)
        if rate != 16000:
            g = np.gcd(int(rate), 16000)
            x = resample_poly(x, 16000 // g, int(rate) // g)
        if snr is not None:
            rng = np.random.default_rng(int(hashlib.sha1(seed_key.encode()).hexdigest()[:8], 16))
            power = np.mean(x ** 2)
            x = x + rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr / 10))
        x = np.clip(np.round(x), -32768, 32767).astype(np.int16)
        tmp_out = Path(tmp) / "out.wav"
        wavfile.write(tmp_out, 16000, x)
        shutil.move(tmp_out, out.with_suffix(".wav.part"))
        os.replace(out.with_suffix(".wav.part"), out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lm-dir", required=True, help="prepared LM text (test.txt, words.txt)")
    p.add_argument("--data", required=True, help="output data dir, e.g. data/test")
    p.add_argument("--cache-dir", required=True, help="audio cache")
    p.add_argument("--num", type=int, default=300)
    p.add_argument("--min-words", type=int, default=5)
    p.add_argument("--max-words", type=int, default=25)
    p.add_argument("--voices", default="slt,kal,ked", help=f"comma list of {sorted(VOICES)}")
    p.add_argument("--snr", type=float, default=None, help="add white noise at this SNR in dB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=2, help="festival processes at once")
    a = p.parse_args(argv)
    voices = a.voices.split(",")
    for v in voices:
        if v not in VOICES:
            raise SystemExit(f"unknown voice {v!r}; known: {', '.join(sorted(VOICES))}")
    lm_dir = Path(a.lm_dir)
    vocab = set(Vocabulary.load(lm_dir / "words.txt").words)
    chosen = select_sentences(lm_dir / "test.txt", vocab, dictionary_words(), num=a.num,
                              min_words=a.min_words, max_words=a.max_words, seed=a.seed)
    utts = []
    for i, (line, words) in enumerate(chosen):
        spk = voices[i % len(voices)]
        utts.append((f"{spk}-{line:06d}", spk, words))
    cache = Path(a.cache_dir)

    def job(u):
        utt, spk, words = u
        return synthesize(" ".join(words), VOICES[spk], a.snr, f"{a.seed}:{utt}", cache)

    with ThreadPoolExecutor(max(1, a.nj)) as pool:
        wavs = list(tqdm(pool.map(job, utts), total=len(utts), desc="festival", unit=" utt"))
    write_data_dir(Path(a.data), [(u, s, w, wav) for (u, s, w), wav in zip(utts, wavs)],
                   info={"num": a.num, "voices": voices, "snr": a.snr, "seed": a.seed,
                         "min_words": a.min_words, "max_words": a.max_words, "source": str(lm_dir / "test.txt")})
    print(f"{a.data}: {len(utts)} utterances, {sum(len(w) for _, _, w in utts)} words, voices {voices}, "
          f"SNR {a.snr if a.snr is not None else 'clean'}")


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        print(f"prepare_test.py: error: {e}", file=sys.stderr)
        sys.exit(1)
