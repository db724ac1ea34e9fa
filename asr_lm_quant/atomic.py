"""Write files so that a crash or an error never leaves partial output behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, *, overwrite: bool = True):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    With ``overwrite=False`` an existing ``path`` is an error (nothing a user made is replaced unasked).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists (refusing to overwrite it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", *, overwrite: bool = True, encoding: str | None = "utf-8"):
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path, overwrite=overwrite) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
