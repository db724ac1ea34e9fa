"""Running NIST SCTK (``sclite``, ``hubscr.pl``) and reading its reports.

Debian's ``sctk`` package installs the programs under ``/usr/lib/sctk/bin`` with a ``sctk <program>``
front end; a Kaldi checkout has them in ``$KALDI_ROOT/tools/sctk/bin``. ``find_sctk`` looks in both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from asr_lm_quant.errors import InputError


class SctkMissing(InputError):
    """SCTK is not installed: a clear one-line error, like bad input (the user can fix it)."""

    def __init__(self, message: str):
        super().__init__(None, message)


def find_sctk(bin_dir=None) -> Path:
    """The directory holding ``sclite`` and ``hubscr.pl`` (``bin_dir``, ``$SCTK_BIN``, Kaldi's, Debian's)."""
    candidates = [bin_dir, os.environ.get("SCTK_BIN")]
    if os.environ.get("KALDI_ROOT"):
        candidates.append(Path(os.environ["KALDI_ROOT"]) / "tools/sctk/bin")
    candidates.append("/usr/lib/sctk/bin")
    front = shutil.which("sctk")
    if front:
        try:
            out = subprocess.run([front, "path"], capture_output=True, text=True, timeout=30).stdout.strip()
            if out:
                candidates.append(out)
        except (OSError, subprocess.TimeoutExpired):
            pass
    for c in candidates:
        if c and (Path(c) / "sclite").is_file() and (Path(c) / "hubscr.pl").is_file():
            return Path(c)
    raise SctkMissing("NIST SCTK not found (install the Debian package 'sctk', or set SCTK_BIN or KALDI_ROOT)")


@dataclass
class SysRow:
    """One row of an sclite summary: sentences, words and the Corr/Sub/Del/Ins/Err/S.Err columns."""
    label: str
    sentences: int
    words: int
    corr: float
    sub: float
    dels: float
    ins: float
    err: float
    serr: float

    def wer_line(self, source: str | None = None) -> str:
        """The line Kaldi's best_wer.sh makes of an sclite ``Sum/Avg`` row."""
        line = (f"%WER {self.err:.1f} | {self.sentences} {self.words} | {self.corr:.1f} {self.sub:.1f} "
                f"{self.dels:.1f} {self.ins:.1f} {self.err:.1f} {self.serr:.1f} |")
        return f"{line} {source}" if source else line


_ROW = re.compile(r"^\s*\|\s*([^|]*?)\s*\|\s*(\S+)\s+(\S+)\s*\|\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*\|")


def _num(s: str) -> float:
    return float(s.rstrip("*+#"))


def parse_sys_rows(text: str, *, source=None) -> list[SysRow]:
    """Every table row of an sclite ``sum``/``rsum`` report (speakers, then ``Sum/Avg`` or ``Sum``, Mean...)."""
    rows = []
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m or m.group(1) in ("SPKR",):
            continue
        try:
            vals = [_num(x) for x in m.groups()[1:]]
        except ValueError:
            continue
        rows.append(SysRow(m.group(1), int(vals[0]) if vals[0].is_integer() else vals[0],
                           int(vals[1]) if vals[1].is_integer() else vals[1], *vals[2:]))
    return rows


def parse_sum_avg(path) -> SysRow:
    """The ``| Sum/Avg |`` row of a ``.sys`` file (or ``| Sum |`` of a ``.raw`` file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "sclite report does not exist")
    for row in parse_sys_rows(path.read_text(encoding="utf-8", errors="replace")):
        if row.label in ("Sum/Avg", "Sum"):
            return row
    raise InputError(path, "no '| Sum/Avg |' line in this sclite report")


def _trn_line(words, uid):
    return (" ".join(words) + " " if words else "") + f"({uid})\n"


def sclite_counts(ref: dict[str, list[str]], hyp: dict[str, list[str]], *, bin_dir=None,
                  case_sensitive: bool = True) -> dict[str, dict[str, int]]:
    """Per-utterance raw counts from ``sclite -o rsum`` (each utterance scored as its own speaker).

    Returns ``{utt: {"words", "corr", "sub", "del", "ins", "err"}}`` plus ``"__sum__"``; references
    without a hypothesis are scored against an empty one.
    """
    sc = find_sctk(bin_dir)
    keys = list(ref)
    ids = {k: f"u{i:07d}-x" for i, k in enumerate(keys)}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with open(d / "ref.trn", "w", encoding="utf-8") as f:
            for k in keys:
                f.write(_trn_line(ref[k], ids[k]))
        with open(d / "hyp.trn", "w", encoding="utf-8") as f:
            for k in keys:
                f.write(_trn_line(hyp.get(k, []), ids[k]))
        cmd = [str(sc / "sclite"), "-r", str(d / "ref.trn"), "trn", "-h", str(d / "hyp.trn"), "trn",
               "-i", "rm", "-o", "rsum", "stdout"]
        if case_sensitive:
            cmd.append("-s")
        p = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
        if p.returncode != 0:
            raise RuntimeError(f"sclite failed ({p.returncode}): {p.stderr[-500:]}")
    back = {v.split("-")[0]: k for k, v in ids.items()}
    out = {}
    for row in parse_sys_rows(p.stdout):
        key = "__sum__" if row.label == "Sum" else back.get(row.label)
        if key is None:
            continue
        out[key] = {"words": int(row.words), "corr": int(row.corr), "sub": int(row.sub),
                    "del": int(row.dels), "ins": int(row.ins), "err": int(row.err)}
    return out


_MTCH_PR = re.compile(r"MTCH_PR_RESULTS \(systems: (\S+) (\S+)\) \(# segs: (\d+)\).*?\(mean: *(\S+)\) "
                      r"\(std dev: *(\S+)\) \(Z Stat: *(\S+)\) \(Stat Diff: (\w+)\)")


def sc_stats_mapsswe(ref: dict[str, list[str]], hyp_a: dict[str, list[str]], hyp_b: dict[str, list[str]], *,
                     bin_dir=None) -> dict:
    """SCTK's own MAPSSWE of B against A: ``sclite -o sgml`` for each system, then ``sc_stats -t mapsswe``.

    Returns sc_stats's numbers as it prints them (``z`` and ``mean`` are of A's errors minus B's, to three
    decimals), its decision at 95%, the p-value of its unified report (from a normal table, rounded; an upper
    bound where ``p_is_bound``, printed ``<0.001``) and the better system (``sysA``/``sysB``, None if no
    significant difference).
    """
    sc = find_sctk(bin_dir)
    if not (sc / "sc_stats").is_file():
        raise SctkMissing(f"{sc}/sc_stats not found (NIST SCTK's sc_stats is needed)")
    keys = list(ref)
    ids = {k: f"u{i:07d}-x" for i, k in enumerate(keys)}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with open(d / "ref.trn", "w", encoding="utf-8") as f:
            for k in keys:
                f.write(_trn_line(ref[k], ids[k]))
        for name, hyp in (("sysA", hyp_a), ("sysB", hyp_b)):
            with open(d / f"{name}.trn", "w", encoding="utf-8") as f:
                for k in keys:
                    f.write(_trn_line(hyp.get(k, []), ids[k]))
            p = subprocess.run([str(sc / "sclite"), "-r", str(d / "ref.trn"), "trn", "-h", str(d / f"{name}.trn"),
                                "trn", name, "-i", "rm", "-s", "-o", "sgml", "-O", str(d), "-n", name],
                               capture_output=True, text=True, encoding="utf-8", errors="replace")
            if p.returncode != 0 or not (d / f"{name}.sgml").is_file():
                raise RuntimeError(f"sclite failed ({p.returncode}): {p.stderr[-500:]}")
        sgml = (d / "sysA.sgml").read_text(encoding="utf-8") + (d / "sysB.sgml").read_text(encoding="utf-8")
        out = {}
        for extra, report in (([], "cmp.stats.mapsswe"), (["-u"], "cmp.stats.unified")):
            p = subprocess.run([str(sc / "sc_stats"), "-p", "-t", "mapsswe", "-v", *extra, "-O", str(d),
                                "-n", "cmp"], input=sgml, capture_output=True, text=True, encoding="utf-8",
                               errors="replace")
            if p.returncode != 0 or not (d / report).is_file():
                raise RuntimeError(f"sc_stats failed ({p.returncode}): {p.stderr[-500:]}")
            out[report] = (d / report).read_text(encoding="utf-8", errors="replace")
    m = _MTCH_PR.search(out["cmp.stats.mapsswe"])
    if not m:
        raise RuntimeError("no MTCH_PR_RESULTS line in sc_stats's report")
    u = re.search(r"\|\|\s+sysA\s+\|\s+\|\s+(\S+)\s+(<?)([0-9.]+)", out["cmp.stats.unified"])
    if not u:
        raise RuntimeError("no sysA/sysB cell in sc_stats's unified report")
    return {"segments": int(m.group(3)), "mean": float(m.group(4)), "std": float(m.group(5)),
            "z": float(m.group(6)), "significant_95": m.group(7) == "Yes", "p": float(u.group(3)),
            "p_is_bound": u.group(2) == "<", "winner": None if u.group(1) == "~" else u.group(1)}
