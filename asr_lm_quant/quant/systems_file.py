"""The systems file of ``quant-sweep``: a JSON list of quantization systems (torch-free, so listing is quick)."""

from __future__ import annotations


from asr_lm_quant.errors import InputError, read_json_file


def load_systems(path) -> dict:
    """Read and check a systems file: an object with a ``systems`` list of ``{name, method, ...}``; names are
    unique strings usable as directory names; ``defaults`` an object, ``models`` an object of model
    directories, ``model`` and ``budget_size_of`` model names. Every field's type is checked here, before use."""
    conf = read_json_file(path, "systems file")
    if not isinstance(conf, dict) or not isinstance(conf.get("systems"), list):
        raise InputError(path, "expected an object with a 'systems' list")
    for field in ("defaults", "models"):
        if field in conf and not isinstance(conf[field], dict):
            raise InputError(path, f"'{field}' is a {_kind(conf[field])}: expected an object", key=field)
    for name, d in conf.get("models", {}).items():
        if not isinstance(d, str) or not d:
            raise InputError(path, f"model {name!r} is {d!r}: expected a model directory (a string)",
                             key=f"models.{name}")
    names = set()
    for i, s in enumerate(conf["systems"]):
        where = f"systems[{i}]"
        if not isinstance(s, dict) or "name" not in s or "method" not in s:
            raise InputError(path, f"system {i} needs a 'name' and a 'method'", key=where)
        if not isinstance(s["name"], str):
            raise InputError(path, f"system name {s['name']!r} is a {_kind(s['name'])}: expected a string",
                             key=where)
        if not isinstance(s["method"], str):
            raise InputError(path, f"method {s['method']!r} is a {_kind(s['method'])}: expected a string",
                             key=where)
        for field in ("model", "budget_size_of"):
            if field in s and not isinstance(s[field], str):
                raise InputError(path, f"'{field}' {s[field]!r} is a {_kind(s[field])}: expected a model name",
                                 key=where)
        if s["name"] in names:
            raise InputError(path, f"duplicate system name {s['name']!r}", key=where)
        if not s["name"].replace("-", "").replace("_", "").replace(".", "").isalnum() or s["name"] in (".", ".."):
            raise InputError(path, f"system name {s['name']!r}: use letters, digits, '-', '_', '.' only "
                                   "(it names a directory)", key=where)
        names.add(s["name"])
    return conf


def _kind(v) -> str:
    """A JSON value's type in JSON's words."""
    if isinstance(v, bool):
        return "boolean"
    return {dict: "object", list: "list", str: "string", int: "number", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)
