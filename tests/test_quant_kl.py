"""KL-divergence mixed precision: the sensitivities, the allocation on them, ``quantize --method kl``, the sweep."""

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from asr_lm_quant.cli import main
from asr_lm_quant.lm.data import BatchPlan
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.allocate import allocate_bits, group_bits_cost, raise_free
from asr_lm_quant.quant.kl import kl_sensitivities, take_batches
from asr_lm_quant.quant.packed import load_packed
from asr_lm_quant.quant.plan import group_names, group_view, group_views
from asr_lm_quant.quant.quantizers import project
from test_quant_bands import write_lm_and_texts

CANDS = [1, 2, 4, 8]


def peaked_model(vocab=40, seed=0):
    """A tiny LM with weights large enough that its next-word distributions are far from uniform (a freshly
    initialised one predicts nearly uniformly and barely reacts to quantization)."""
    torch.manual_seed(seed)
    m = TransformerLM(LMConfig(vocab_size=vocab, d_model=8, n_layers=1, n_heads=2, d_ff=12, dropout=0.0))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.6)
    return m.eval()


def random_batches(vocab, n_sent=14, seed=1, tokens=40):
    """Sentences of 3..11 words in batches with padding (lengths differ within a batch)."""
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.cat([torch.zeros(1, dtype=torch.long),
                       torch.randint(2, vocab, (int(torch.randint(3, 12, (1,), generator=g)),), generator=g),
                       torch.zeros(1, dtype=torch.long)]).numpy() for _ in range(n_sent)]
    plan = BatchPlan(seqs, tokens, seed=0, shuffle=False)
    return [b for _, b in plan.iterate(0)], seqs


def test_kl_is_zero_where_the_table_reproduces_the_weights_and_grows_as_bits_fall():
    m = peaked_model()
    fc1 = m.get_parameter("layers.0.ff.fc1.weight")
    with torch.no_grad():  # ternary weights: 2 bits (and maybe wider tables) reproduce them exactly, 1 bit not
        r = torch.randint(-1, 2, fc1.shape, generator=torch.Generator().manual_seed(3))
        fc1.copy_(0.25 * r.float())
    exact = {b for b in CANDS if torch.equal(project(fc1, b)[0], fc1.detach())}
    assert 2 in exact and 1 not in exact
    before = {n: p.detach().clone() for n, p in m.state_dict().items()}
    batches, _ = random_batches(40)
    assert len(batches) > 1 and any((b.targets == -100).any() for b in batches)
    res = kl_sensitivities(m, batches, CANDS)
    kl = res["kl"]
    assert set(kl) == set(group_names(m)) and all(set(v) == set(CANDS) for v in kl.values())
    for b in CANDS:
        assert (kl["layers.0.ff.fc1.weight"][b] == 0.0) == (b in exact), b
    for n, v in kl.items():
        if n != "layers.0.ff.fc1.weight":
            assert v[1] > v[2] > v[4] > v[8] > 0, (n, v)
    assert res["tokens"] == sum(b.tokens for b in batches) and res["batches"] == len(batches)
    assert res["seconds"] > 0
    # every weight is back, bit for bit, and the model is still in eval mode
    assert all(torch.equal(p, before[n]) for n, p in m.state_dict().items())
    assert not m.training


def brute_force_kl(model, group, bits, seqs, per_row=False):
    """Mean per-token KL(full precision || group quantized), one sentence at a time, no padding, through
    torch's own kl_div on a separately quantized copy of the model."""
    import copy
    q = copy.deepcopy(model)
    with torch.no_grad():
        group_view(q, group).copy_(project(group_view(model, group), bits, per_row)[0])
    total, n = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            x = torch.as_tensor(s[:-1]).unsqueeze(0)
            lp = model(x)[0].double().log_softmax(-1)
            lq = q(x)[0].double().log_softmax(-1)
            total += float(F.kl_div(lq, lp, log_target=True, reduction="sum"))
            n += x.shape[1]
    return total / n


@pytest.mark.parametrize("group,bits,per_row", [("embed.weight[10:30]", 2, False),
                                                ("layers.0.attn.out_proj.weight", 1, False),
                                                ("layers.0.ff.fc2.weight", 4, True)])
def test_kl_matches_a_brute_force_computation(group, bits, per_row):
    m = peaked_model()
    names = group_names(m, [10, 30])
    assert group in names
    batches, seqs = random_batches(40, n_sent=10, seed=5, tokens=30)
    assert any((b.targets == -100).any() for b in batches)  # padding is left out of the mean
    res = kl_sensitivities(m, batches, [bits], names, per_row)
    want = brute_force_kl(m, group, bits, seqs, per_row)
    assert want > 1e-4
    assert res["kl"][group][bits] == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_token_budget_takes_whole_batches():
    batches, _ = random_batches(40, tokens=30)
    sizes = [b.tokens for b in batches]
    took = take_batches(iter(batches), sizes[0] + sizes[1])
    assert [b.tokens for b in took] == sizes[:2]
    assert len(take_batches(iter(batches), 1)) == 1  # at least one batch
    assert len(take_batches(iter(batches), 10**6)) == len(batches)


# --- the allocation on KL costs ----------------------------------------------------------------------------
NUMEL = {"a": 100, "b": 300, "c": 600}
KL = {"a": {1: 5.0, 2: 1.0, 4: 0.1}, "b": {1: 3.0, 2: 0.5, 4: 0.0}, "c": {1: 1.0, 2: 0.6, 4: 0.5}}


def size_of(bits, numel=NUMEL):
    return sum(group_bits_cost(numel[n], 1, b, False) for n, b in bits.items())


def test_ilp_on_kl_costs_finds_the_optimum_within_the_budget():
    budget = 2 * 1000 + 3 * 32  # 2 bits per weight on average, scales on top
    bits = allocate_bits(KL, NUMEL, budget)
    # by hand: all 2 bits costs 2.1; a at 4, b at 2, c at 1 (1600 code bits) costs 0.1 + 0.5 + 1.0 = 1.6; b at 4
    # needs c at 1 and a at 2 (2000 code bits): 1.0 + 0.0 + 1.0 = 2.0
    assert bits == {"a": 4, "b": 2, "c": 1}
    assert size_of(bits) <= budget
    feasible = [dict(zip(KL, combo)) for combo in itertools.product(*(sorted(KL[n]) for n in KL))
                if size_of(dict(zip(KL, combo))) <= budget]
    best = min(sum(KL[n][b] for n, b in f.items()) for f in feasible)
    assert sum(KL[n][b] for n, b in bits.items()) == pytest.approx(best) == pytest.approx(1.6)
    # no group can go up within the budget
    assert all(size_of({**bits, n: nb}) > budget for n in bits for nb in KL[n] if nb > bits[n])


def test_ties_at_zero_go_to_precision():
    numel = {"a": 100, "b": 100}
    kl = {"a": {1: 0.0, 2: 0.0, 4: 0.0}, "b": {1: 1.0, 2: 0.5, 4: 0.2}}
    budget = 600 + 64  # b at 4 bits leaves room for a at 2, not 4
    assert allocate_bits(kl, numel, budget) == {"a": 2, "b": 4}
    assert raise_free({"a": 1, "b": 4}, kl, numel, budget) == {"a": 2, "b": 4}
    # a rise that would cost more is never made
    assert raise_free({"a": 1, "b": 1}, {"a": {1: 0.0, 2: 0.1}, "b": {1: 1.0, 2: 1.0}}, numel, 10**6) == \
        {"a": 1, "b": 2}


# --- quantize --method kl ----------------------------------------------------------------------------------
def kl_args(tmp_path, out="q", *extra):
    return ["quantize", str(tmp_path / "lm"), str(tmp_path / out), "--method", "kl", "--budget-bits", "2",
            "--bands", "3", "--train", str(tmp_path / "t.txt"), "--valid", str(tmp_path / "v.txt"), "--steps", "4",
            "--tokens-per-batch", "128", "--kl-tokens", "300", "--project-every", "2", "--final-steps", "2",
            *extra]


def test_quantize_kl_end_to_end(tmp_path):
    write_lm_and_texts(tmp_path, ["t.txt", "v.txt"])
    assert main(kl_args(tmp_path)) == 0
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    cfg = json.loads((tmp_path / "q" / "quant_config.json").read_text())
    assert res["method"] == "kl" and cfg["kl_tokens"] == 300
    rec = res["record"]
    names = list(res["plan_bits"])
    assert set(rec["kl"]["kl"]) == set(names) and len(names) == 3 + 4
    assert all(set(v) == {"1", "2", "4", "8"} for v in rec["kl"]["kl"].values())
    assert 0 < rec["kl"]["tokens"] <= 300 and rec["kl"]["seconds"] > 0
    assert res["sensitivity_seconds"] >= rec["kl"]["seconds"]
    for n, v in rec["kl"]["kl"].items():
        assert v["1"] > v["8"] >= 0, n
    # the chosen bits are the exact optimum of the recorded costs, and no group can go up within the budget
    kl = {n: {int(b): x for b, x in v.items()} for n, v in rec["kl"]["kl"].items()}
    model, _, plan = load_packed(tmp_path / "q")
    views = group_views(model, names)
    numel = {n: p.numel() for n, p in views.items()}
    chosen = rec["chosen_bits"]
    assert res["plan_bits"] == chosen
    used = sum(group_bits_cost(numel[n], 1, b, False) for n, b in chosen.items())
    assert used <= rec["budget_bits"]
    assert all(used - group_bits_cost(numel[n], 1, b, False) + group_bits_cost(numel[n], 1, nb, False)
               > rec["budget_bits"] for n, b in chosen.items() for nb in CANDS if nb > b)
    best = min(sum(kl[n][b] for n, b in zip(names, combo)) for combo in itertools.product(CANDS, repeat=len(names))
               if sum(group_bits_cost(numel[n], 1, b, False) for n, b in zip(names, combo)) <= rec["budget_bits"])
    assert rec["objective"] == pytest.approx(best, rel=1e-9)
    assert res["avg_bits"] <= 2.0 + 1e-9 and res["avg_bits"] > 1.8
    # the packed model holds its weights on the chosen tables
    for n, gp in plan.groups.items():
        w = views[n].detach()
        assert len(torch.unique(w)) <= (2 if gp.bits == 1 else 2 ** gp.bits - 1), n
    assert res["valid_ppl"] > 1


def test_quantize_kl_refuses_bad_options_before_any_work(tmp_path, capsys, monkeypatch):
    import asr_lm_quant.quant.kl as kl

    def no_work(*a, **k):
        raise AssertionError("sensitivities computed for a refused configuration")
    monkeypatch.setattr(kl, "kl_sensitivities", no_work)
    write_lm_and_texts(tmp_path, ["t.txt", "v.txt"])
    no_valid = [a for a in kl_args(tmp_path) if a not in ("--valid", str(tmp_path / "v.txt"))]
    cases = [(no_valid, "method kl needs --valid"),
             (kl_args(tmp_path, "q", "--kl-tokens", "0"), "kl_tokens must be at least 1"),
             (kl_args(tmp_path, "q", "--candidates", "0,2"), "precision 0"),
             (kl_args(tmp_path, "q", "--compression", "16"), "exactly one of"),
             (kl_args(tmp_path, "q", "--budget-bits", "0.2"), "below the smallest")]
    for argv, expect in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert expect in err and "Traceback" not in err, err
        assert not (tmp_path / "q").exists()


def test_sweep_tabulates_and_plots_kl_beside_hessian(tmp_path, monkeypatch):
    from asr_lm_quant.quant import plots, sweep
    write_lm_and_texts(tmp_path, ["t.txt", "v.txt"])
    systems = {"defaults": {"tokens_per_batch": 128, "max_len": 32, "candidates": [1, 2, 4],
                            "finetune": {"steps": 2, "log_every": 1}, "admm": {"project_every": 1},
                            "hessian_max_samples": 2, "hessian_batches": 1, "kl_tokens": 200},
               "models": {"base": str(tmp_path / "lm")},
               "systems": [{"name": "fp", "method": "fp"},
                           {"name": "hessian-2", "method": "hessian", "budget_bits": 2},
                           {"name": "kl-2", "method": "kl", "budget_bits": 2, "bands": 2}]}
    (tmp_path / "systems.json").write_text(json.dumps(systems))
    drawn = {}
    real = plots.plot_bits
    monkeypatch.setattr(plots, "plot_bits", lambda bits, path: (drawn.update(bits), real(bits, path)))
    rows = sweep.run_sweep(tmp_path / "systems.json", tmp_path / "out",
                           texts={"train": str(tmp_path / "t.txt"), "valid": str(tmp_path / "v.txt")})
    assert set(drawn) == {"hessian-2", "kl-2"} and "embed.weight[0:23]" in drawn["kl-2"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "sensitivity s" in md.splitlines()[0]
    by = {r["name"]: r for r in rows}
    kl_line = next(x for x in md.splitlines() if x.startswith("| kl-2 |"))
    assert kl_line.startswith("| kl-2 | base | kl | ")
    assert kl_line.rstrip(" |").endswith(f"{by['kl-2']['sensitivity_seconds']:.1f}")
    assert next(x for x in md.splitlines() if x.startswith("| fp |")).rstrip().endswith("| - |")
    for png in ("bits_per_group.png", "kl_sensitivity_kl-2.png", "hessian_trace_hessian-2.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["name"]: r.get("sensitivity_seconds") for r in saved}["kl-2"] > 0


@pytest.mark.parametrize("conf", ["quant.json", "quant_quick.json", "quant_systems.json"])
def test_mini_recipe_systems_are_valid_configurations(conf, repo_dir, tmp_path):
    from asr_lm_quant.quant.pipeline import QuantConfig, check_config
    from asr_lm_quant.quant.systems_file import load_systems
    path = repo_dir / "recipes/mini/conf" / conf
    sysconf = load_systems(path)
    text = tmp_path / "t.txt"
    text.write_text("a b\n")
    for s in sysconf["systems"]:
        s = {k: v for k, v in s.items() if k not in ("name", "model", "budget_size_of")}
        if s["method"] == "fp":
            continue
        cfg = QuantConfig.from_dict({**sysconf["defaults"], **s, "model": "m", "out": "o", "train_text": str(text),
                                     "valid_text": str(text)}, source=path)
        check_config(cfg)
    kl = [s for s in sysconf["systems"] if s["method"] == "kl"]
    assert kl and all(s.get("budget_bits") == 2 for s in kl)
    if conf == "quant_systems.json":  # the quantization table: KL on both models
        assert {s.get("model", "base") for s in kl} == {"base", "deep"}
    if conf == "quant.json":  # the demo: 16x by KL beside the Hessian and search systems
        assert {"hessian", "search"} <= {s["method"] for s in sysconf["systems"]}
