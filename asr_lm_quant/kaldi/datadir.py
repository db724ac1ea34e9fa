"""Kaldi data directories (``data/<set>/``): ``text``, ``utt2spk``, ``spk2utt``, ``segments``, ``wav.scp``,
``reco2file_and_channel``.

Every file is ``key rest-of-line``, sorted by key in the C locale (byte order, which for UTF-8 is code point
order, i.e. Python's ``sorted``). Readers return dicts in file order and reject duplicate keys and, where
``check_sorted``, unsorted files (as ``utils/validate_data_dir.sh`` does); writers sort and write atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError
from asr_lm_quant.textio import read_lines, split_fields


def read_table(path, *, min_fields: int = 1, max_fields: int | None = None, check_sorted: bool = True,
               allow_empty_value: bool = True) -> dict[str, list[str]]:
    """``key field1 field2 ...`` lines -> {key: [fields]}."""
    out: dict[str, list[str]] = {}
    prev = None
    for n, line in read_lines(path):
        parts = split_fields(line)
        if not parts:
            raise InputError(path, "empty line", line=n)
        key, rest = parts[0], parts[1:]
        if len(rest) < min_fields and not (allow_empty_value and not rest):
            raise InputError(path, f"expected at least {min_fields} field(s) after the key", line=n, key=key)
        if max_fields is not None and len(rest) > max_fields:
            raise InputError(path, f"expected at most {max_fields} field(s) after the key", line=n, key=key)
        if key in out:
            raise InputError(path, "duplicate key", line=n, key=key)
        if check_sorted and prev is not None and key < prev:
            raise InputError(path, f"not sorted (C locale): {key!r} after {prev!r}", line=n, key=key)
        out[key] = rest
        prev = key
    return out


def write_table(path, table: dict, *, overwrite: bool = True) -> None:
    """Write {key: value} sorted by key; a list value is joined with spaces."""
    with atomic_open(path, overwrite=overwrite) as f:
        for key in sorted(table):
            v = table[key]
            v = " ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
            f.write(f"{key} {v}\n" if v else f"{key}\n")


def read_text(path, **kw) -> dict[str, list[str]]:
    """``text``: utt-id -> words (may be empty)."""
    return read_table(path, min_fields=0, **kw)


def read_utt2spk(path, **kw) -> dict[str, str]:
    return {k: v[0] for k, v in read_table(path, min_fields=1, max_fields=1, allow_empty_value=False,
                                           **kw).items()}


def read_spk2utt(path, **kw) -> dict[str, list[str]]:
    return read_table(path, min_fields=1, allow_empty_value=False, **kw)


def utt2spk_to_spk2utt(utt2spk: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in sorted(utt2spk):
        out.setdefault(utt2spk[u], []).append(u)
    return out


@dataclass
class Segment:
    reco: str
    start: float
    end: float


def read_segments(path, **kw) -> dict[str, Segment]:
    out = {}
    for n, (key, f) in enumerate(read_table(path, min_fields=3, max_fields=3, allow_empty_value=False,
                                            **kw).items(), 1):
        try:
            start, end = float(f[1]), float(f[2])
        except ValueError:
            raise InputError(path, f"start/end are not numbers: {f[1]!r} {f[2]!r}", key=key) from None
        if not (0 <= start < end or end == -1):
            raise InputError(path, f"bad segment times {start} {end}", key=key)
        out[key] = Segment(f[0], start, end)
    return out


def read_wav_scp(path, **kw) -> dict[str, str]:
    return {k: " ".join(v) for k, v in read_table(path, min_fields=1, allow_empty_value=False, **kw).items()}


def read_reco2file_and_channel(path, **kw) -> dict[str, tuple[str, str]]:
    t = read_table(path, min_fields=2, max_fields=2, allow_empty_value=False, **kw)
    return {k: (v[0], v[1]) for k, v in t.items()}


@dataclass
class DataDir:
    """The files of one data dir that exist (others are None)."""
    path: Path
    text: dict | None = None
    utt2spk: dict | None = None
    spk2utt: dict | None = None
    segments: dict | None = None
    wav_scp: dict | None = None
    reco2file_and_channel: dict | None = None
    problems: list = field(default_factory=list)

    @classmethod
    def load(cls, path, *, validate: bool = True) -> "DataDir":
        path = Path(path)
        if not path.is_dir():
            raise InputError(path, "data dir does not exist")
        d = cls(path)
        readers = {"text": read_text, "utt2spk": read_utt2spk, "spk2utt": read_spk2utt,
                   "segments": read_segments, "wav.scp": read_wav_scp,
                   "reco2file_and_channel": read_reco2file_and_channel}
        for name, fn in readers.items():
            if (path / name).exists():
                setattr(d, name.replace(".", "_"), fn(path / name))
        if validate:
            d.validate()
        return d

    def validate(self) -> None:
        """Cross-file checks, as ``utils/validate_data_dir.sh`` makes them; raises InputError."""
        p = self.path
        if self.utt2spk is not None and self.spk2utt is not None:
            if utt2spk_to_spk2utt(self.utt2spk) != {k: sorted(v) for k, v in self.spk2utt.items()}:
                raise InputError(p / "spk2utt", "does not match utt2spk")
        if self.text is not None and self.utt2spk is not None:
            extra = sorted(set(self.text) - set(self.utt2spk))
            if extra:
                raise InputError(p / "text", "utterance not in utt2spk", key=extra[0])
        if self.segments is not None:
            if self.utt2spk is not None:
                extra = sorted(set(self.segments) ^ set(self.utt2spk))
                if extra:
                    raise InputError(p / "segments", "segments and utt2spk have different utterances",
                                     key=extra[0])
            if self.wav_scp is not None:
                bad = sorted(u for u, s in self.segments.items() if s.reco not in self.wav_scp)
                if bad:
                    raise InputError(p / "segments", f"recording {self.segments[bad[0]].reco!r} not in "
                                                     "wav.scp", key=bad[0])
            if self.reco2file_and_channel is not None:
                bad = sorted(u for u, s in self.segments.items() if s.reco not in self.reco2file_and_channel)
                if bad:
                    raise InputError(p / "segments", f"recording {self.segments[bad[0]].reco!r} not in "
                                                     "reco2file_and_channel", key=bad[0])

    def save(self, path=None, *, overwrite: bool = True) -> None:
        out = Path(path or self.path)
        out.mkdir(parents=True, exist_ok=True)
        if self.text is not None:
            write_table(out / "text", self.text, overwrite=overwrite)
        if self.utt2spk is not None:
            write_table(out / "utt2spk", self.utt2spk, overwrite=overwrite)
            spk2utt = self.spk2utt if self.spk2utt is not None else utt2spk_to_spk2utt(self.utt2spk)
            write_table(out / "spk2utt", {k: sorted(v) for k, v in spk2utt.items()}, overwrite=overwrite)
        if self.segments is not None:
            write_table(out / "segments", {k: f"{s.reco} {s.start:.2f} {s.end:.2f}"
                                           for k, s in self.segments.items()}, overwrite=overwrite)
        if self.wav_scp is not None:
            write_table(out / "wav.scp", self.wav_scp, overwrite=overwrite)
        if self.reco2file_and_channel is not None:
            write_table(out / "reco2file_and_channel",
                        {k: f"{f} {c}" for k, (f, c) in self.reco2file_and_channel.items()},
                        overwrite=overwrite)
