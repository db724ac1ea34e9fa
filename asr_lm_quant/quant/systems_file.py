"""The systems file of ``quant-sweep``: a JSON list of quantization systems (torch-free, so listing is quick)."""

from __future__ import annotations


from asr_lm_quant.errors import InputError, read_json_file


def load_systems(path) -> dict:
    """Read and check a systems file: an object with a ``systems`` list of ``{name, method, ...}``; names are
    unique and usable as directory names."""
    conf = read_json_file(path, "systems file")
    if not isinstance(conf, dict) or not isinstance(conf.get("systems"), list):
        raise InputError(path, "expected an object with a 'systems' list")
    names = set()
    for i, s in enumerate(conf["systems"]):
        if not isinstance(s, dict) or "name" not in s or "method" not in s:
            raise InputError(path, f"system {i} needs a 'name' and a 'method'", key=f"systems[{i}]")
        if s["name"] in names:
            raise InputError(path, f"duplicate system name {s['name']!r}", key=f"systems[{i}]")
        if not str(s["name"]).replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InputError(path, f"system name {s['name']!r}: use letters, digits, '-', '_', '.' only "
                                   "(it names a directory)", key=f"systems[{i}]")
        names.add(s["name"])
    return conf
