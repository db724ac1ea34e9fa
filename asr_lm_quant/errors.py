"""Errors for bad user input: each names the file and where in it the problem is."""

from __future__ import annotations


class InputError(Exception):
    """A user-supplied file or argument is missing, malformed or inconsistent.

    The message always starts with the file (and, where known, the line, key or byte offset),
    so a user can find the problem without reading a traceback.
    """

    def __init__(self, path, message: str, *, line: int | None = None, key: str | None = None,
                 offset: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.offset = offset
        where = []
        if self.path:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"key {key!r}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(prefix + message)
        self.message = message


def read_json_file(path, what: str = "file"):
    """The JSON value of a file a user gave: a missing file, bad UTF-8 or bad JSON is an InputError that
    names the file (and the line); ``what`` says what the file was meant to be ("plan file" ...)."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None
    except UnicodeDecodeError as e:
        raise InputError(path, f"not valid UTF-8: {e.reason}", offset=e.start) from None
