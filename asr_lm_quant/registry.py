"""Registries that find their members by scanning a package: a new member is one new module, nothing else.

``scan(package, path, attr, kind)`` imports every module of the package whose name does not start with ``_``
and collects the object each defines under ``attr`` (``METHOD``, ``FORMAT``), which must be a ``kind``.
"""

from __future__ import annotations

import importlib
import pkgutil


def scan(package: str, path, attr: str, kind: type, reserved=()) -> dict:
    """name -> member of every module of ``package`` (its ``__path__`` is ``path``); a module without ``attr``
    or a name used twice (or in ``reserved``) is a programming error, raised at once."""
    found = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        member = getattr(module, attr, None)
        if not isinstance(member, kind):
            raise TypeError(f"{module.__name__} defines no {attr} = {kind.__name__}(...)")
        if member.name in found or member.name in reserved:
            raise TypeError(f"{module.__name__}: the name {member.name!r} is taken")
        found[member.name] = member
    return found
