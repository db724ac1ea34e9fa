#!/usr/bin/env python3
"""Find WikiText-2 (word level, v1) or download it, and check it against pinned checksums.

Prints the directory holding train/valid/test (``.txt``, ``.txt.xz`` or ``.txt.gz``) on standard output.
Looks, in order, in: the directories given with ``--search`` (the recipe passes ``--corpus-dir`` and
``../shared/data/wikitext-2``), ``$ASR_LM_QUANT_WIKITEXT2``, and ``--dest``. Only when none holds the corpus
does it download the three files into ``--dest`` from their public copy (the PyTorch word-language-model
example, the same bytes as ``wiki.{train,valid,test}.tokens`` of the original release). A copy whose content
does not match the checksums is an error, never silently replaced or used.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/{split}.txt"
# Of the decompressed files.
MD5 = {"train": "34a77ebe59551b3a3b3d8c0a2797c976", "valid": "d756d22ab2310e7e60c094bea5c5a8eb",
       "test": "781c9418ab9414bd09e4aad825aae752"}
SHA256 = {"train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
          "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
          "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"}
SPLITS = ("train", "valid", "test")


class Problem(Exception):
    pass


def split_file(d: Path, split: str) -> Path | None:
    for ext in (".txt", ".txt.xz", ".txt.gz"):
        if (d / f"{split}{ext}").is_file():
            return d / f"{split}{ext}"
    return None


def digests(path: Path) -> tuple[str, str]:
    opener = lzma.open if path.suffix == ".xz" else gzip.open if path.suffix == ".gz" else open
    md5, sha = hashlib.md5(), hashlib.sha256()
    try:
        with opener(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                md5.update(block)
                sha.update(block)
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise Problem(f"{path}: cannot read ({e})") from None
    return md5.hexdigest(), sha.hexdigest()


def verified(d: Path) -> bool:
    """True if ``d`` holds all three splits with the right content; False if it holds none of them."""
    files = {s: split_file(d, s) for s in SPLITS}
    if not any(files.values()):
        return False
    for s, f in files.items():
        if f is None:
            raise Problem(f"{d}: has some WikiText-2 splits but no {s}.txt (.xz/.gz)")
        md5, _ = digests(f)
        if md5 != MD5[s]:
            raise Problem(f"{f}: content does not match WikiText-2's {s} split (md5 {md5}, expected {MD5[s]}); "
                          "a truncated or different file? Remove it to download a fresh copy")
    return True


def download(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        target = dest / f"{s}.txt"
        if target.exists():
            continue
        url = URL.format(split=s)
        print(f"get_wikitext2.py: downloading {url}", file=sys.stderr)
        fd, tmp = tempfile.mkstemp(prefix=f".{s}.", dir=dest)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                while block := resp.read(1 << 20):
                    out.write(block)
            _, sha = digests(Path(tmp))
            if sha != SHA256[s]:
                raise Problem(f"{url}: downloaded content does not match the pinned sha256 of WikiText-2's {s} "
                              f"split ({sha})")
            os.replace(tmp, target)
        except OSError as e:
            raise Problem(f"cannot download {url} ({e}). Without network access, put WikiText-2's "
                          "{train,valid,test}.txt (.xz/.gz) in a directory DIR and set ASR_LM_QUANT_WIKITEXT2=DIR "
                          "(this works for `make quick` and `make demo` too), or give DIR to "
                          "recipes/mini/run.sh --corpus-dir") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--search", action="append", default=[], help="a directory that may hold WikiText-2")
    ap.add_argument("--dest", required=True, help="where to download it when no copy is found")
    a = ap.parse_args(argv)
    # (directory, where its name came from): the log says which source was used.
    candidates = [(Path(p), "--search: the recipe's --corpus-dir") for p in a.search]
    if os.environ.get("ASR_LM_QUANT_WIKITEXT2"):
        candidates.append((Path(os.environ["ASR_LM_QUANT_WIKITEXT2"]), "$ASR_LM_QUANT_WIKITEXT2"))
    try:
        for d, source in candidates:
            if d.is_dir() and verified(d):
                print(f"get_wikitext2.py: WikiText-2 found in {d} (from {source}), checksums match", file=sys.stderr)
                print(d)
                return 0
        download(Path(a.dest))  # fetches only the splits not there yet
        if not verified(Path(a.dest)):
            raise Problem(f"{a.dest}: no WikiText-2 after downloading")
    except Problem as e:
        print(f"get_wikitext2.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("get_wikitext2.py: interrupted", file=sys.stderr)
        return 130
    print(f"get_wikitext2.py: WikiText-2 in {a.dest} (downloaded), checksums match", file=sys.stderr)
    print(a.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
