"""A list of quantization systems from a JSON file -> one directory each, results.json, results.md, plots.

Systems file::

    {"defaults": {<QuantConfig fields>},
     "models": {"base": "exp/lm", "deep": "exp/lm_deep"},
     "systems": [{"name": "fp", "method": "fp"},
                 {"name": "admm-4", "method": "admm", "bits": 4},
                 {"name": "deep-hessian", "model": "deep", "method": "hessian", "budget_size_of": "base"}]}

``method: "fp"`` evaluates the unquantized model. ``budget_size_of: NAME`` sets the size budget to the 32-bit
size of model NAME (a deeper model compressed to the size of a shallower full-precision one). A system whose
directory already has results.json is not run again (re-running the stage resumes), provided the configuration it
was run with is this one: a system file edited since (or another file naming a system the same) is an error that
names the options that differ, not a table row that silently stands for another configuration.

Parallel jobs (``quant-sweep --worker``, e.g. ``run.pl JOB=1:N``): each worker takes the systems no other
worker holds, the costliest first, holding an exclusive lock on ``OUT/.claims/<system>`` while it runs one, and
writes no table; a last plain ``quant-sweep`` waits for any system still held, runs what is left and tabulates.
The locks are the kernel's (``flock``): a worker that dies frees its systems, and their checkpoints resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
from pathlib import Path

from asr_lm_quant.atomic import atomic_open
from asr_lm_quant.errors import InputError, read_json_file
from asr_lm_quant.quant import plots
from asr_lm_quant.quant.methods import all_methods, mixed_methods
from asr_lm_quant.quant.packed import load_any_lm
from asr_lm_quant.quant.pipeline import CONFIG, RESULTS, QuantConfig, check_config, evaluate_texts, run
from asr_lm_quant.quant.plan import QuantPlan
from asr_lm_quant.quant.systems_file import load_systems

log = logging.getLogger(__name__)


def fp_results(model_dir, cfg: QuantConfig) -> dict:
    model, vocab = load_any_lm(model_dir)
    size = QuantPlan.uniform(model, 32).size_report(model)
    res = {"method": "fp", "bits": 32, "avg_bits": 32.0, "size_mb": size["fp32_bytes"] / 1e6,
           "ideal_mb": size["fp32_bytes"] / 1e6, "fp32_mb": size["fp32_bytes"] / 1e6, "compression": 1.0}
    res.update(evaluate_texts(model, vocab, cfg))
    res["config"] = _fp_config(cfg)
    return res


def _fp_config(cfg: QuantConfig) -> dict:
    """What an fp row depends on: the model and how it is evaluated."""
    d = cfg.to_dict()
    return {k: d[k] for k in ("model", "valid_text", "test_text", "eval_tokens_per_batch", "max_len")}


def run_sweep(systems_file, out_dir, *, models: dict[str, str] | None = None, texts: dict[str, str] | None = None,
              only: list[str] | None = None, worker: bool = False) -> list[dict]:
    """Run the systems (all, or ``only`` these) and write the table; ``worker``: run those no other worker
    holds and return their rows, writing no table (see the module's docstring)."""
    conf = load_systems(systems_file)
    out_dir = Path(out_dir)
    models = {**conf.get("models", {}), **(models or {})}
    defaults = {**conf.get("defaults", {}), **{f"{k}_text": v for k, v in (texts or {}).items() if v}}
    unknown = sorted(set(only or ()) - {s["name"] for s in conf["systems"]})
    if unknown:
        raise InputError(systems_file, f"--only names system(s) the file does not have: {', '.join(unknown)}")
    jobs = []
    for s in conf["systems"]:
        if only and s["name"] not in only:
            continue
        s = dict(s)
        name, method = s.pop("name"), s["method"]
        model_name = s.pop("model", "base")
        if model_name not in models:
            raise InputError(systems_file, f"model {model_name!r} is not defined (give --model {model_name}=DIR)",
                             key=name)
        # Every system's configuration is checked before the first one runs.
        jobs.append((name, method, model_name, _config(systems_file, out_dir, name, method, models, model_name, s,
                                                       defaults)))
    for name, method, _, cfg in jobs:
        _check_existing(name, method, cfg)
    order = sorted(jobs, key=lambda j: -_cost(j[1], models[j[2]])) if worker else jobs
    rows = {}
    for name, method, model_name, cfg in order:
        with _claim(out_dir, name, wait=not worker) as held:
            if held:
                rows[name] = {"name": name, "model": model_name, **_run_system(name, method, cfg)}
    if worker:
        return [rows[j[0]] for j in jobs if j[0] in rows]
    rows = [rows[j[0]] for j in jobs]
    write_report(rows, out_dir)
    return rows


def _config(systems_file, out_dir: Path, name, method, models, model_name, s, defaults) -> QuantConfig:
    size_of = s.pop("budget_size_of", None)
    if size_of is not None:
        if size_of not in models:
            raise InputError(systems_file, f"budget_size_of names model {size_of!r}, which is not defined (give "
                                           f"--model {size_of}=DIR)", key=name)
        m, _ = load_any_lm(models[size_of])
        s["budget_mb"] = QuantPlan.uniform(m, 32).size_report(m)["fp32_bytes"] / 1e6
    cfg = QuantConfig.from_dict({**defaults, **s, "model": models[model_name], "out": str(out_dir / name),
                                 "method": "ptq" if method == "fp" else method}, source=systems_file)
    try:
        if method != "fp":  # fp only evaluates
            check_config(cfg)
    except InputError as e:
        where = f"{e.key}: " if e.key else ""
        raise InputError(e.path or systems_file, f"system {name!r}: {where}{e.message}",
                         key=None if e.path else name) from None
    return cfg


def _run_system(name, method, cfg: QuantConfig) -> dict:
    sdir = Path(cfg.out)
    if (sdir / RESULTS).exists():  # checked by _check_existing before the first system ran
        log.info("%s: already done", name)
        res = read_json_file(sdir / RESULTS)
        if not isinstance(res, dict):
            raise InputError(sdir / RESULTS, f"system {name!r}: not a JSON object; remove {sdir} to run it again")
        return res
    if method == "fp":
        res = fp_results(cfg.model, cfg)
        sdir.mkdir(parents=True, exist_ok=True)
        with atomic_open(sdir / RESULTS) as f:
            json.dump(res, f, indent=1)
        return res
    log.info("system %s: %s", name, method)
    return run(cfg)


# Where a result was written, how often it was checkpointed and on which device do not change what it is; paths
# are compared resolved (a re-run from the same directory names them alike).
_NOT_COMPARED = ("out", "checkpoint_every", "device")
_PATHS = ("model", "train_text", "valid_text", "test_text")


def _comparable(d: dict) -> dict:
    d = json.loads(json.dumps({k: v for k, v in d.items() if k not in _NOT_COMPARED}))
    for k in _PATHS:
        if isinstance(d.get(k), str) and d[k]:
            d[k] = str(Path(d[k]).resolve())
    return d


def _check_existing(name: str, method: str, cfg: QuantConfig) -> None:
    """A system that already has results: the configuration they were made with must be this one."""
    sdir = Path(cfg.out)
    if not (sdir / RESULTS).exists():
        return
    if method == "fp":
        where = sdir / RESULTS
        res = read_json_file(where)
        saved, now = (res.get("config") if isinstance(res, dict) else res), _fp_config(cfg)
        if saved is None:  # written before fp rows recorded their configuration
            return
    else:
        where = sdir / CONFIG
        if not where.exists():
            raise InputError(sdir, f"system {name!r}: has {RESULTS} but no {CONFIG}, so what it was run with is "
                                   f"unknown; remove {sdir} to run it again")
        saved, now = read_json_file(where), cfg.to_dict()
    if not isinstance(saved, dict):
        raise InputError(where, f"system {name!r}: its saved configuration is not a JSON object")
    saved, now = _comparable(saved), _comparable(now)
    differ = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if differ:
        shown = "; ".join(f"{k}: {json.dumps(saved.get(k))} there, {json.dumps(now.get(k))} now" for k in differ[:3])
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        raise InputError(where, f"system {name!r} was run with another configuration ({shown}{more}); remove "
                                f"{sdir} to run it again, or give another output directory")


# ``method: "fp"`` only evaluates, as cheap as the cheapest method; a method's own cost is its METHOD.cost.
FP_COST = 0.05


def _cost(method: str, model_dir) -> float:
    """What a system roughly costs: its model's size times its method's relative cost."""
    size = sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
    return size * (FP_COST if method == "fp" else all_methods()[method].cost)


@contextlib.contextmanager
def _claim(out_dir: Path, name: str, wait: bool):
    """Hold ``OUT/.claims/<name>`` exclusively: yields True once held; without ``wait``, False at once when
    another process holds it."""
    d = out_dir / ".claims"
    try:
        d.mkdir(parents=True, exist_ok=True)
        f = open(d / name, "a")
    except OSError as e:
        raise InputError(d, f"cannot create the claim of system {name!r}: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        except OSError as e:  # e.g. a network file system without locks
            raise InputError(d / name, f"cannot lock the claim of system {name!r}: {e.strerror}; run quant-sweep "
                                       "without --worker there") from None
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_report(rows: list[dict], out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_open(out_dir / "results.json") as f:
        json.dump([{k: v for k, v in r.items() if k != "record"} for r in rows], f, indent=1)
    with atomic_open(out_dir / "results.md") as f:
        f.write(results_table(rows))
    if rows:
        plots.plot_size_ppl(rows, out_dir / "size_vs_ppl.png")
    bits = {r["name"]: r["plan_bits"] for r in rows if r.get("method") in mixed_methods() and r.get("plan_bits")}
    if bits:
        plots.plot_bits(bits, out_dir / "bits_per_group.png")
    for r in rows:
        h = (r.get("record") or {}).get("hessian")
        if h:
            plots.plot_traces(h["trace"], out_dir / f"hessian_trace_{r['name']}.png", h.get("stderr"))
        kl = (r.get("record") or {}).get("kl")
        if kl:
            plots.plot_kl(kl["kl"], out_dir / f"kl_sensitivity_{r['name']}.png")


def results_table(rows: list[dict]) -> str:
    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    # sensitivity s: what choosing the precisions cost (Hessian traces, KL passes, or the search's training)
    lines = ["| system | model | method | avg bits | size MB | compression | valid ppl | test ppl | sensitivity s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['model']} | {r['method']} | {f(r.get('avg_bits'), '.2f')} | "
                     f"{f(r.get('size_mb'), '.3f')} | {f(r.get('compression'), '.1f')}x | "
                     f"{f(r.get('valid_ppl'), '.2f')} | {f(r.get('test_ppl'), '.2f')} | "
                     f"{f(r.get('sensitivity_seconds'), '.1f')} |")
    return "\n".join(lines) + "\n"
