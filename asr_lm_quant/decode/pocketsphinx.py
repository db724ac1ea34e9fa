"""Run pocketsphinx (PyPI ``pocketsphinx`` 5, its bundled US English acoustic model and dictionary) over
16 kHz mono 16-bit WAV files with an ARPA LM, keeping its word lattices.

Words of the LM that the dictionary cannot pronounce are simply never hypothesised; give the LM's
vocabulary and the dictionary a large overlap (the mini recipe picks test sentences whose words are in
both).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from asr_lm_quant.atomic import atomic_path
from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import split_fields

# Pocketsphinx's own defaults, written out so that they are part of every cache key.
DEFAULT_CONFIG = {"lw": 6.5, "wip": 0.65, "beam": 1e-48, "wbeam": 7e-29, "fwdflat": True, "bestpath": True}


def model_paths() -> dict:
    from pocketsphinx import get_model_path
    root = Path(get_model_path()) / "en-us"
    return {"hmm": str(root / "en-us"), "dict": str(root / "cmudict-en-us.dict")}


def dictionary_words(dict_path=None) -> set[str]:
    """Words the pocketsphinx dictionary can pronounce (variants ``word(2)`` folded)."""
    path = Path(dict_path or model_paths()["dict"])
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                words.add(re.sub(r"\(\d+\)$", "", line.split(maxsplit=1)[0]))
    return words


def read_wav_16k(path) -> np.ndarray:
    """16-bit samples of a 16 kHz mono WAV file; anything else is an error naming the file."""
    from scipy.io import wavfile
    try:
        rate, x = wavfile.read(path)
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read WAV: {e}") from None
    if rate != 16000 or x.ndim != 1 or x.dtype != np.int16:
        raise InputError(path, f"need 16 kHz mono 16-bit PCM, got {rate} Hz, shape {x.shape}, {x.dtype}")
    return x


def file_digest(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class PocketsphinxDecoder:
    """One pocketsphinx decoder with an ARPA (or pocketsphinx binary) LM.

    ``decode(samples, lattice_path)`` returns the 1-best words and writes the word lattice in
    pocketsphinx's text format (gzipped when the name ends in .gz). With ``cache_dir`` lattices are kept
    under a name derived from the audio, the LM and the configuration, and reused when those match.
    """

    def __init__(self, lm_path, *, config: dict | None = None, cache_dir=None):
        from pocketsphinx import Decoder
        self.lm_path = Path(lm_path)
        if not self.lm_path.exists():
            raise InputError(self.lm_path, "LM file does not exist")
        self.config = dict(DEFAULT_CONFIG)
        self.config.update(config or {})
        paths = model_paths()
        self._decoder = Decoder(hmm=paths["hmm"], dict=paths["dict"], lm=str(self.lm_path),
                                loglevel="ERROR", **self.config)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._key = None
        if self.cache_dir:
            meta = {"lm": file_digest(self.lm_path), "config": self.config,
                    "pocketsphinx": _version()}
            self._key = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()

    def decode(self, samples: np.ndarray, lattice_path) -> list[str]:
        lattice_path = Path(lattice_path)
        cached = hyp_cached = None
        if self.cache_dir:
            key = hashlib.sha1(self._key.encode() + samples.tobytes()).hexdigest()
            cached = self.cache_dir / key[:2] / f"{key}.lat.gz"
            hyp_cached = cached.with_name(f"{key}.hyp")
            if cached.exists() and hyp_cached.exists():
                _link_or_copy(cached, lattice_path)
                return split_fields(hyp_cached.read_text(encoding="utf-8"))
        d = self._decoder
        d.start_utt()
        d.process_raw(samples.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        words = split_fields(hyp.hypstr) if hyp else []
        target = cached or lattice_path
        target.parent.mkdir(parents=True, exist_ok=True)
        lat = d.get_lattice()
        if lat is None:
            raise InputError(lattice_path, "pocketsphinx produced no lattice (empty or silent audio?)")
        with atomic_path(target) as tmp:
            # Lattice.write picks gzip from the name; write plain text and compress ourselves.
            plain = Path(str(tmp) + ".txt")
            lat.write(str(plain))
            import gzip
            with open(plain, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
                dst.write(src.read())
            plain.unlink()
        if cached:
            with atomic_path(hyp_cached) as tmp:
                tmp.write_text(" ".join(words) + "\n", encoding="utf-8")
            _link_or_copy(cached, lattice_path)
        return words


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("pocketsphinx")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _link_or_copy(src: Path, dst: Path):
    # rename() onto another link of the same file is a no-op that would leave the temporary link behind
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            import shutil
            shutil.copyfile(src, tmp)
