import json
import lzma

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from asr_lm_quant.cli import main
from asr_lm_quant.lm.data import BatchPlan, encode_file, sequences
from asr_lm_quant.lm.files import save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.hessian import hutchinson_traces
from asr_lm_quant.quant.packed import PACKED, load_packed
from asr_lm_quant.quant.plan import QuantPlan, weight_groups
from asr_lm_quant.quant.options import AdmmOptions, FinetuneOptions
from asr_lm_quant.quant.train import admm_train, token_loss
from asr_lm_quant.text.vocab import Vocabulary


def _wiki_lines(repo_dir):
    """240 real WikiText-2 lines: from ../shared when it is there, else from the committed fixture (the
    first normalised sentences of WikiText-2, tests/fixtures/lm)."""
    from conftest import SHARED
    src = SHARED / "data/wikitext-2/valid.txt.xz"
    if src.exists():
        with lzma.open(src, "rt", encoding="utf-8") as f:
            return [ln.strip().lower() for ln in f if ln.strip() and not ln.strip().startswith("=")][:240]
    lines = (repo_dir / "tests/fixtures/lm/train.txt").read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip()][:240]


@pytest.fixture(scope="module")
def wiki(repo_dir, tmp_path_factory):
    """A few hundred real WikiText-2 lines (lower-cased), a vocabulary of their frequent words."""
    d = tmp_path_factory.mktemp("wiki")
    lines = _wiki_lines(repo_dir)
    (d / "train.txt").write_text("\n".join(lines[:200]) + "\n")
    (d / "valid.txt").write_text("\n".join(lines[200:]) + "\n")
    counts = {}
    for ln in lines[:200]:
        for w in ln.split():
            counts[w] = counts.get(w, 0) + 1
    words = ["<s>", "<unk>"] + [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
                                if w not in ("<s>", "<unk>")][:198]
    vocab = Vocabulary(words)
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=16, n_layers=1, n_heads=2, d_ff=16,
                                   dropout=0.0))
    save_lm(d / "lm", model, vocab)
    return d, vocab


def batches_of(d, vocab, name, tokens=256):
    return BatchPlan(sequences(encode_file(d / name, vocab), vocab.bos, 32), tokens, seed=0)


@pytest.mark.slow
def test_hutchinson_matches_exact_trace(wiki):
    d, vocab = wiki
    torch.manual_seed(0)
    model = TransformerLM(LMConfig(vocab_size=len(vocab), d_model=4, n_layers=1, n_heads=1, d_ff=4, dropout=0.0))
    batch = next(iter(batches_of(d, vocab, "valid.txt", 64).iterate(0)))[1]
    params = weight_groups(model)
    exact = {}
    with sdpa_kernel([SDPBackend.MATH]):
        loss = token_loss(model(batch.inputs), batch.targets)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        for (n, p), g in zip(params.items(), grads):
            gf = g.reshape(-1)
            exact[n] = sum(float(torch.autograd.grad(gf[i], p, retain_graph=True)[0].reshape(-1)[i])
                           for i in range(p.numel()))
    est = hutchinson_traces(model, [batch], tol=0.0, max_samples=300, seed=1)
    assert est["samples"] == 300 and not est["converged"]
    for n in params:
        assert abs(est["trace"][n] - exact[n]) <= 4 * est["stderr"][n] + 1e-3 * abs(exact[n]), n
    # the running-mean tolerance stops early
    quick = hutchinson_traces(model, [batch], tol=0.05, max_samples=400, seed=1)
    assert quick["converged"] and quick["samples"] < 400


def test_admm_reduces_distance_and_ends_on_table(wiki):
    d, vocab = wiki
    from asr_lm_quant.lm.files import load_lm
    model, _ = load_lm(d / "lm")
    plan = QuantPlan.uniform(model, 2)
    train = batches_of(d, vocab, "train.txt")
    out, rec = admm_train(model, plan, train, FinetuneOptions(steps=40, lr=1e-2, warmup=1, log_every=10),
                          AdmmOptions(rho=0.5, rho_growth=2.0, rho_max=100.0, project_every=5))
    dist = [x["rel_dist"] for x in rec["distance"]]
    assert dist[-1] < 0.5 * dist[0]
    with pytest.raises(ValueError, match="final_steps"):
        admm_train(model, plan, train, FinetuneOptions(steps=40), AdmmOptions(final_steps=41))
    for n, p in weight_groups(model).items():  # W = Q exactly: only 3 distinct values per group
        assert len(torch.unique(p)) <= 3
        assert float(p.detach().abs().max()) == pytest.approx(out.groups[n].scales[0])


def test_frozen_code_phase_keeps_codes_and_lowers_loss(wiki, tmp_path):
    d, vocab = wiki
    from asr_lm_quant.lm.files import load_lm
    from asr_lm_quant.quant.packed import save_packed
    from asr_lm_quant.quant.ptq import quantize_model
    from asr_lm_quant.quant.quantizers import quantize_codes
    from asr_lm_quant.quant.train import evaluate_ppl, train_frozen_codes
    model, _ = load_lm(d / "lm")
    plan = QuantPlan.uniform(model, 2)
    plan.groups["layers.0.ff.fc1.weight"].bits = 32  # a float group stays float and has no scale
    plan = quantize_model(model, plan)
    train = batches_of(d, vocab, "train.txt")
    codes = {n: quantize_codes(p, plan.groups[n].bits, plan.scale_tensor(n)) for n, p in weight_groups(model).items()
             if plan.groups[n].bits != 32}
    norms = {n: p.detach().clone() for n, p in model.named_parameters() if "norm" in n}
    fc1 = model.get_parameter("layers.0.ff.fc1.weight").detach().clone()
    before = evaluate_ppl(model, train)["ppl"]
    out, hist = train_frozen_codes(model, plan, train, FinetuneOptions(steps=30, lr=1e-2, warmup=1, log_every=10))
    assert len(hist) == 3 and evaluate_ppl(model, train)["ppl"] < before
    assert out.groups["layers.0.ff.fc1.weight"].scales is None
    assert not torch.equal(model.get_parameter("layers.0.ff.fc1.weight"), fc1)  # a float group trains too
    assert all(p.requires_grad for p in model.parameters())
    assert any(not torch.equal(p, norms[n]) for n, p in model.named_parameters() if n in norms)
    moved = 0
    for n, c in codes.items():  # same codes, new scales, weights exactly alpha * codes
        p = model.get_parameter(n)
        new = out.scale_tensor(n)
        assert torch.equal(quantize_codes(p, out.groups[n].bits, new), c), n
        assert torch.equal(p.detach(), new[0, 0] * c.float()), n
        moved += float(new[0, 0]) != plan.groups[n].scales[0]
    assert moved == len(codes)
    save_packed(tmp_path / "q", model, out, vocab)  # packs losslessly
    back, _, _ = load_packed(tmp_path / "q")
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), back.state_dict().values()))


def test_cli_end_to_end_deterministic(wiki, tmp_path, capsys):
    d, _ = wiki
    args = ["quantize", str(d / "lm"), None, "--method", "hessian", "--budget-bits", "2",
            "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), "--test", str(d / "valid.txt"),
            "--steps", "6", "--tokens-per-batch", "256", "--hessian-max-samples", "6", "--hessian-batches", "2",
            "--project-every", "2", "--seed", "3"]
    for out in ("a", "b"):
        args[2] = str(tmp_path / out)
        assert main(args) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["method"] == "hessian" and res["avg_bits"] <= 2.0
    assert set(res["plan_bits"].values()) <= {1, 2, 4, 8}
    assert res["valid_ppl"] > 1 and res["compression"] > 2
    (ma, _, pa), (mb, _, pb) = load_packed(tmp_path / "a"), load_packed(tmp_path / "b")
    assert pa == pb  # same seed: same plan, scales and weights
    assert all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))
    cfg = json.loads((tmp_path / "a" / "quant_config.json").read_text())
    assert cfg["method"] == "hessian" and cfg["seed"] == 3
    load_packed(tmp_path / "a")
    capsys.readouterr()
    assert main(["quant-inspect", str(tmp_path / "a")]) == 0
    table = capsys.readouterr().out
    assert "embed.weight" in table and "overhead" in table
    # the same compression as quantize reported, the ideal one labelled as such
    assert f"compression {res['compression']:.2f}x (of the file; ideal {res['ideal_compression']:.2f}x)" in table
    # refuses to overwrite, and a budget below the candidates is a clear error with nothing written
    assert main(args) == 1
    bad = list(args)
    bad[2], bad[6] = str(tmp_path / "c"), "0.5"
    assert main(bad) == 1
    assert "below the smallest" in capsys.readouterr().err
    assert not (tmp_path / "c" / PACKED).exists()


@pytest.mark.slow
def test_sweep_writes_table_and_plots(wiki, tmp_path):
    d, _ = wiki
    systems = {"defaults": {"tokens_per_batch": 256, "finetune": {"steps": 3, "warmup": 1},
                            "admm": {"project_every": 1}, "hessian_max_samples": 3, "hessian_batches": 1,
                            "search_steps": 3},
               "systems": [{"name": "fp", "method": "fp"}, {"name": "ptq-4", "method": "ptq", "bits": 4},
                           {"name": "ste-2", "method": "ste", "bits": 2},
                           {"name": "search-2", "method": "search", "budget_bits": 2, "bands": 2},
                           {"name": "hess-small", "method": "hessian", "budget_size_of": "base",
                            "model": "base"}]}
    (tmp_path / "systems.json").write_text(json.dumps(systems))
    rc = main(["quant-sweep", "--systems", str(tmp_path / "systems.json"), "--model", f"base={d / 'lm'}",
               "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), str(tmp_path / "out")])
    assert rc == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["name"] for r in rows] == ["fp", "ptq-4", "ste-2", "search-2", "hess-small"]
    assert rows[0]["compression"] == 1.0 and rows[1]["avg_bits"] == 4
    assert rows[3]["avg_bits"] <= 2.0 and "embed.weight[0:67]" in rows[3]["plan_bits"]
    assert rows[4]["size_mb"] <= rows[0]["size_mb"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.count("\n") == 2 + 5
    for png in ("size_vs_ppl.png", "bits_per_group.png", "hessian_trace_hess-small.png"):
        assert (tmp_path / "out" / png).read_bytes()[:4] == b"\x89PNG"


def test_distillation_objective(wiki):
    d, vocab = wiki
    from asr_lm_quant.lm.files import load_lm
    from asr_lm_quant.quant.train import objective
    model, _ = load_lm(d / "lm")
    other, _ = load_lm(d / "lm")
    with torch.no_grad():
        other.embed.weight.mul_(3.0)
    from asr_lm_quant.lm.data import PAD_TARGET
    # A batch with padding: padded positions must not count.
    b = next(b for _, b in batches_of(d, vocab, "train.txt").iterate(0) if (b.targets == PAD_TARGET).any())
    logits = model(b.inputs)
    ce = token_loss(logits.detach(), b.targets)
    plain = FinetuneOptions(distill=0.0)
    loss, lm = objective(model, {}, b, plain, other)
    assert loss.item() == pytest.approx(float(ce), rel=1e-6) and float(lm) == pytest.approx(float(ce), rel=1e-6)
    half = FinetuneOptions(distill=0.5)
    same, lm = objective(model, {}, b, half, model)  # teacher == student: KL 0
    assert same.item() == pytest.approx(0.5 * float(ce), rel=1e-5) and float(lm) == pytest.approx(float(ce), rel=1e-6)
    assert not lm.requires_grad and same.requires_grad
    diff, _ = objective(model, {}, b, half, other)
    kl = diff.item() / 0.5 - float(ce)
    # the KL term by hand, over real target tokens
    t = other(b.inputs).log_softmax(-1)
    s = logits.log_softmax(-1)
    mask = b.targets != PAD_TARGET
    want = (t.exp() * (t - s)).sum(-1)[mask].mean().item()
    assert kl == pytest.approx(want, rel=1e-4) and want > 0
    # its gradient: that of the same loss through the whole logits
    q = 0.5 * t.exp().detach()
    q[mask] += 0.5 * F.one_hot(b.targets[mask], t.shape[-1])
    ref = (-(q * s).sum(-1)[mask].sum() + (0.5 * t.exp() * t).sum(-1)[mask].sum()) / mask.sum()
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    got = torch.autograd.grad(objective(model, {}, b, half, other)[0], list(model.parameters()))
    assert ref.item() == pytest.approx(diff.item(), rel=1e-5)
    for g, r in zip(got, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_cli_plan_trainer_and_distill(wiki, tmp_path):
    d, _ = wiki
    args = ["quantize", str(d / "lm"), str(tmp_path / "q"), "--method", "hessian", "--budget-bits", "2",
            "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), "--steps", "3",
            "--tokens-per-batch", "256", "--hessian-max-samples", "3", "--hessian-batches", "1",
            "--plan-trainer", "ste", "--distill", "0.5"]
    assert main(args) == 0
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    cfg = json.loads((tmp_path / "q" / "quant_config.json").read_text())
    assert res["record"]["plan_trainer"] == "ste" and "distance" not in res["record"]
    assert cfg["finetune"]["distill"] == 0.5 and cfg["plan_trainer"] == "ste"


def test_bf16_auto_follows_the_cpu(monkeypatch):
    """``"bf16": "auto"`` in a systems file: bf16 autocast only where the CPU multiplies bf16 natively."""
    from asr_lm_quant.errors import InputError
    from asr_lm_quant.lm import device
    from asr_lm_quant.quant.pipeline import QuantConfig
    for native in (True, False):
        monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda native=native: native)
        cfg = QuantConfig.from_dict({"model": "m", "out": "o", "method": "ptq", "finetune": {"bf16": "auto"}})
        assert cfg.finetune.bf16 is native
    with pytest.raises(InputError, match="bf16: true, false or \"auto\""):
        QuantConfig.from_dict({"model": "m", "out": "o", "method": "ptq", "finetune": {"bf16": "yes"}}, "q.json")


@pytest.mark.slow
def test_sweep_workers_share_the_systems_and_match_one_job(wiki, tmp_path):
    """Two `quant-sweep --worker` processes at once, then the tabulating pass: every system runs once, in one
    of them, and the table equals that of a single job."""
    import subprocess
    import sys

    d, _ = wiki
    systems = {"defaults": {"tokens_per_batch": 256, "finetune": {"steps": 3, "warmup": 1},
                            "hessian_max_samples": 3, "hessian_batches": 1},
               "systems": [{"name": "fp", "method": "fp"}, {"name": "ptq-4", "method": "ptq", "bits": 4},
                           {"name": "ste-2", "method": "ste", "bits": 2},
                           {"name": "ste-4", "method": "ste", "bits": 4},
                           {"name": "hess-2", "method": "hessian", "budget_bits": 2}]}
    (tmp_path / "systems.json").write_text(json.dumps(systems))
    args = ["quant-sweep", "--systems", str(tmp_path / "systems.json"), "--model", f"base={d / 'lm'}",
            "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), "--threads", "1"]
    assert main(args + [str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "asr_lm_quant.cli"] + args + ["--worker", str(tmp_path / "par")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert not (tmp_path / "par" / "results.json").exists()  # workers write no table
    ran = [ln.split("system ")[1].split(":")[0] for _, err in logs for ln in err.splitlines() if " system " in ln]
    assert sorted(ran) == ["hess-2", "ptq-4", "ste-2", "ste-4"]  # each once, in one worker or the other
    assert all((tmp_path / "par" / n / "results.json").exists() for n in ("fp", "ptq-4", "ste-2", "ste-4", "hess-2"))
    assert main(args + [str(tmp_path / "par")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    par = json.loads((tmp_path / "par" / "results.json").read_text())
    assert [r["name"] for r in par] == [r["name"] for r in one]
    for a, b in zip(one, par):
        assert a["valid_ppl"] == pytest.approx(b["valid_ppl"], rel=1e-9), a["name"]
        assert a["avg_bits"] == b["avg_bits"]


def test_sweep_checks_every_system_before_running_any(wiki, tmp_path, capsys):
    d, _ = wiki
    for bad, msg in (({"name": "x", "method": "nope"}, "system 'x': method: unknown method 'nope'"),
                     ({"name": "x", "method": "ste", "bits": 40}, "system 'x': bits: precision 40"),
                     ({"name": "x", "method": "hessian", "budget_size_of": "big"}, "model 'big', which is not")):
        systems = {"systems": [{"name": "fp", "method": "fp"}, {"name": "ptq-4", "method": "ptq", "bits": 4}, bad]}
        (tmp_path / "systems.json").write_text(json.dumps(systems))
        out = tmp_path / "out"
        rc = main(["quant-sweep", "--systems", str(tmp_path / "systems.json"), "--model", f"base={d / 'lm'}",
                   "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), str(out)])
        err = capsys.readouterr().err
        assert rc == 1 and msg in err and "systems.json" in err, err
        assert not (out / "fp").exists() and not (out / "ptq-4").exists()  # nothing ran
    # A system name in --only that the file lacks (a typo) is refused, not silently skipped.
    rc = main(["quant-sweep", "--systems", str(tmp_path / "systems.json"), "--only", "fp,ptq4", "--model",
               f"base={d / 'lm'}", "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"), str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "--only names system(s) the file does not have: ptq4" in err, err
    assert not (out / "fp").exists()


def test_sweep_reuses_a_result_only_for_the_same_configuration(wiki, tmp_path, capsys):
    """Re-running resumes: done systems are not run again. A system whose configuration changed since (or one
    of another systems file under the same name) is refused, naming what differs, and nothing is rewritten."""
    d, _ = wiki
    out, conf = tmp_path / "out", tmp_path / "systems.json"

    def sweep(systems, *extra):
        conf.write_text(json.dumps({"systems": systems}))
        return main(["quant-sweep", "--systems", str(conf), "--model", f"base={d / 'lm'}", "--train",
                     str(d / "train.txt"), "--valid", str(d / "valid.txt"), *extra, str(out)])

    fp, ptq = {"name": "fp", "method": "fp"}, {"name": "ptq", "method": "ptq", "bits": 4}
    assert sweep([fp, ptq]) == 0
    first = (out / "ptq" / "results.json").read_bytes()
    stamp = (out / "ptq" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert sweep([fp, ptq]) == 0  # unchanged: reused
    assert (out / "ptq" / "results.json").stat().st_mtime_ns == stamp
    assert sweep([fp, dict(ptq, bits=8)]) == 1
    err = capsys.readouterr().err
    assert "quant_config.json" in err and "system 'ptq' was run with another configuration (bits: 4 there, 8 now)" \
        in err and "remove" in err, err
    # The full-precision row depends on the evaluation texts.
    assert sweep([fp], "--test", str(d / "valid.txt")) == 1
    err = capsys.readouterr().err
    assert "system 'fp' was run with another configuration (test_text: null there" in err, err
    assert (out / "ptq" / "results.json").read_bytes() == first
    # A result without the configuration it was made with cannot be vouched for.
    (out / "ptq" / "quant_config.json").unlink()
    assert sweep([ptq]) == 1
    assert "has results.json but no quant_config.json" in capsys.readouterr().err


def test_sweep_claim_errors_are_named(tmp_path, monkeypatch):
    import errno
    import fcntl

    from asr_lm_quant.errors import InputError
    from asr_lm_quant.quant import sweep

    def no_locks(f, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(InputError, match="cannot lock the claim of system 'ste-2': No locks available"):
        with sweep._claim(tmp_path, "ste-2", wait=False):
            pass
    monkeypatch.undo()
    (tmp_path / "ro").write_text("a file where the directory would go")
    with pytest.raises(InputError, match="cannot create the claim of system 'x'"):
        with sweep._claim(tmp_path / "ro", "x", wait=True):
            pass
    with sweep._claim(tmp_path, "y", wait=False) as held:  # free: held at once
        assert held
        with sweep._claim(tmp_path, "y", wait=False) as again:  # another open file description: refused
            assert not again


def test_sweep_workers_take_the_costliest_systems_first(tmp_path):
    """Workers order systems by model size times the method's cost: a mixed-precision system that must first
    choose its bits goes before plain fine-tuning, which goes before systems that only evaluate; a deeper
    model's before the base model's."""
    from asr_lm_quant.quant import sweep
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.safetensors").write_bytes(b"0" * 1000)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "model.safetensors").write_bytes(b"0" * 1500)
    jobs = [("ptq", "base"), ("ste", "base"), ("hessian", "base"), ("search", "base"), ("kl", "base"),
            ("hessian", "deep"), ("fp", "deep")]
    order = sorted(jobs, key=lambda j: -sweep._cost(j[0], tmp_path / j[1]))
    assert order == [("hessian", "deep"), ("search", "base"), ("kl", "base"), ("hessian", "base"), ("ste", "base"),
                     ("fp", "deep"), ("ptq", "base")]
