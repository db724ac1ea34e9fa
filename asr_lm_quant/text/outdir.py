"""All-or-nothing output directories: results appear together, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path


class OutputExists(FileExistsError):
    pass


@contextlib.contextmanager
def staged_output(out_dir, names, *, overwrite: bool = False):
    """Yield a staging directory; when the block succeeds, move ``names`` from it into ``out_dir``.

    If any of ``names`` already exists in ``out_dir`` and ``overwrite`` is false, nothing is done and
    OutputExists is raised. On any error the staging directory is removed and ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    existing = [n for n in names if (out_dir / n).exists()]
    if existing and not overwrite:
        raise OutputExists(f"{out_dir}: already holds {', '.join(existing)} (use --overwrite to replace)")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=out_dir))
    ok = False
    try:
        yield stage
        missing = [n for n in names if not (stage / n).exists()]
        if missing:
            raise RuntimeError(f"internal error: staged output lacks {missing}")
        mode = _default_mode()
        for n in names:
            os.chmod(stage / n, mode if (stage / n).is_file() else 0o777 & ~_umask())  # not the temp's 0700
            if (out_dir / n).is_dir() and not (out_dir / n).is_symlink():
                shutil.rmtree(out_dir / n)  # an earlier result (overwrite is on): a directory is not replaced
            os.replace(stage / n, out_dir / n)
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not ok:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # leave no trace of a failed run


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
