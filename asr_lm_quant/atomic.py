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
    if path.exists() and not path.is_file() and not path.is_dir():
        # A device or pipe (/dev/stdout, a named pipe): written in place; renaming onto it would replace it.
        yield path
        return
    if not overwrite and path.exists():
        raise FileExistsError(f"{path}: already exists (give --overwrite to replace it)")
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


def check_writable(path, *, overwrite: bool, what: str = "output") -> None:
    """Fail now, before any long work, if ``path`` cannot be written as an output: it exists and
    ``overwrite`` is off, it is a directory, or its nearest existing parent is not a writable directory."""
    from asr_lm_quant.errors import InputError

    path = Path(path)
    if path.exists():
        if path.is_dir():
            raise InputError(path, f"{what} is a directory")
        if not path.is_file():
            return  # a device or pipe, written in place
        if not overwrite:
            raise InputError(path, f"{what} already exists (give --overwrite to replace it)")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(parent, f"is not a directory (cannot write {path})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(parent, f"directory is not writable (cannot write {path})")

