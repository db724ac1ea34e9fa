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
