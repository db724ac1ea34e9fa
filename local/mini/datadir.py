"""Kaldi data directories for the mini recipe (text, wav.scp, utt2spk, spk2utt), written all at once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def write_data_dir(data: Path, utts, info: dict | None = None):
    """``utts``: ``(utt_id, speaker, words, wav_path)``; files sorted by utt-id (C locale) as Kaldi wants.

    The directory is built beside ``data`` and renamed into place, so it is complete or absent.
    """
    data = Path(data)
    tmp = data.with_name(data.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "wav").mkdir(parents=True)
    utts = sorted(utts, key=lambda u: u[0].encode())
    spk2utt: dict[str, list[str]] = {}
    with open(tmp / "text", "w") as text, open(tmp / "wav.scp", "w") as scp, open(tmp / "utt2spk", "w") as u2s:
        for utt, spk, words, wav in utts:
            if not utt.startswith(spk):
                raise ValueError(f"utterance id {utt} must start with its speaker id {spk} (Kaldi sorting)")
            target = tmp / "wav" / f"{utt}.wav"
            try:
                os.link(wav, target)
            except OSError:
                shutil.copyfile(wav, target)
            text.write(f"{utt} {' '.join(words)}\n")
            scp.write(f"{utt} {(data / 'wav' / f'{utt}.wav').resolve()}\n")
            u2s.write(f"{utt} {spk}\n")
            spk2utt.setdefault(spk, []).append(utt)
    with open(tmp / "spk2utt", "w") as f:
        for spk in sorted(spk2utt, key=str.encode):
            f.write(f"{spk} {' '.join(spk2utt[spk])}\n")
    if info is not None:
        (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    if data.exists():
        shutil.rmtree(data)
    os.replace(tmp, data)
