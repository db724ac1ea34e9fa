"""CTM files as Kaldi's Switchboard scoring makes them, and the Hub5 hypothesis filter.

``nbest-to-ctm`` writes ``utt 1 start dur word`` (times relative to the utterance, float32 products of the
frame shift and frame counts, two decimals); ``utils/convert_ctm.pl`` moves them onto the recording with
``segments`` and ``reco2file_and_channel``: ``file channel start dur word`` (``%.2f``). When a hypothesis
has no alignment its words are spread evenly over the segment instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_lm_quant.errors import InputError
from asr_lm_quant.scoring.filters import HESITATION_RE, NOISE_RE, UNK_RE
from asr_lm_quant.textio import read_lines, split_fields


@dataclass(frozen=True)
class Segment:
    reco: str
    start: float
    end: float
    start_text: str  # convert_ctm.pl adds the number as written


def read_segments(path) -> dict[str, Segment]:
    out = {}
    for n, line in read_lines(path):
        f = split_fields(line)
        if not f:
            continue
        if len(f) != 4:
            raise InputError(path, "expected 'utt-id recording-id start end'", line=n)
        try:
            start, end = float(f[2]), float(f[3])
        except ValueError:
            raise InputError(path, "start and end must be numbers", line=n, key=f[0]) from None
        if f[0] in out:
            raise InputError(path, "utterance id appears twice", line=n, key=f[0])
        out[f[0]] = Segment(f[1], start, end, f[2])
    return out


def read_reco2file_and_channel(path) -> dict[str, tuple[str, str]]:
    out = {}
    for n, line in read_lines(path):
        f = split_fields(line)
        if not f:
            continue
        if len(f) != 3:
            raise InputError(path, "expected 'recording-id file channel'", line=n)
        out[f[0]] = (f[1], f[2])
    return out


def _f32_times(frame_shift: float, frames) -> list[str]:
    prod = np.float32(frame_shift) * np.asarray(frames, dtype=np.float32)
    return [f"{float(x):.2f}" for x in prod]


def utterance_ctm(key: str, words: list[str], times: list[tuple[int, int]] | None, *, frame_shift: float,
                  segment: Segment | None = None) -> list[tuple[str, str, str]]:
    """``(start, dur, word)`` strings relative to the utterance, as nbest-to-ctm prints them.

    ``times`` is ``(start_frame, num_frames)`` per word; ``None`` (or all-zero frame counts) spreads the words
    evenly over the segment (``segment`` is needed then).
    """
    if times is not None and len(times) == len(words) and sum(n for _, n in times) > 0:
        starts = _f32_times(frame_shift, [s for s, _ in times])
        durs = _f32_times(frame_shift, [n for _, n in times])
        return list(zip(starts, durs, words))
    if not words:
        return []
    if segment is None:
        raise InputError(None, "no word alignment and no segment to spread the words over", key=key)
    span = max(segment.end - segment.start, 0.0)
    step = span / len(words)
    return [(f"{i * step:.2f}", f"{step:.2f}", w) for i, w in enumerate(words)]


def convert_ctm_lines(key: str, rel: list[tuple[str, str, str]], segments: dict[str, Segment],
                      reco2fc: dict[str, tuple[str, str]], *, segments_name=None, r2fc_name=None) -> list[str]:
    """convert_ctm.pl: recording-relative lines ``file channel start dur word``."""
    seg = segments.get(key)
    if seg is None:
        raise InputError(segments_name, "utterance not defined in the segments file", key=key)
    fc = reco2fc.get(seg.reco)
    if fc is None:
        raise InputError(r2fc_name, f"recording {seg.reco!r} not defined in reco2file_and_channel", key=key)
    base = float(seg.start_text)
    return [f"{fc[0]} {fc[1]} {float(start) + base:.2f} {float(dur):.2f} {w}" for start, dur, w in rel]


def hub5_keep_ctm_line(line: str) -> bool:
    """local/score_sclite.sh's filter: drop noise/laughter, ``<unk>``, hesitations and partial words."""
    return not (NOISE_RE.search(line) or UNK_RE.search(line) or HESITATION_RE.search(line)
                or line.endswith("-"))
