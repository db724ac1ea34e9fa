"""Row bands of vocabulary-sized matrices as weight groups: naming, tiling, every method, packing."""

import json

import pytest
import torch

from asr_lm_quant.cli import main
from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.data import Batch
from asr_lm_quant.lm.files import save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.quant.hessian import hutchinson_traces
from asr_lm_quant.quant.packed import load_packed, save_packed
from asr_lm_quant.quant.plan import QuantPlan, band_edges, group_names, split_group, weight_groups
from asr_lm_quant.quant.ptq import quantize_model
from asr_lm_quant.text.vocab import Vocabulary


def model_of(vocab=70, tie=True):
    torch.manual_seed(0)
    return TransformerLM(LMConfig(vocab_size=vocab, d_model=8, n_layers=1, n_heads=2, d_ff=12, dropout=0.0,
                                  tie_embeddings=tie))


def test_band_edges_and_names():
    assert band_edges(10000, 4) == [0, 667, 2000, 4667, 10000]
    assert band_edges(10000, 1) == [0, 10000]
    assert band_edges(100, [10, 40]) == [0, 10, 40, 100]
    for bad in ([40, 10], [0, 50], [100], 0):
        with pytest.raises(ValueError):
            band_edges(100, bad)
    assert split_group("embed.weight[3:17]") == ("embed.weight", (3, 17))
    assert split_group("layers.0.ff.fc1.weight") == ("layers.0.ff.fc1.weight", None)
    m = model_of(tie=False)  # an untied output layer is vocabulary-sized too
    names = group_names(m, 3)
    assert [n for n in names if "[" in n] == ["embed.weight[0:10]", "embed.weight[10:30]", "embed.weight[30:70]",
                                              "out.weight[0:10]", "out.weight[10:30]", "out.weight[30:70]"]
    assert group_names(m) == list(weight_groups(m))


def test_plan_must_tile_the_rows():
    m = model_of()
    plan = QuantPlan.uniform(m, 2, bands=[20])
    plan.validate(m)
    for broken in ({"embed.weight[0:20]": "embed.weight[0:25]"},    # overlap
                   {"embed.weight[20:70]": "embed.weight[21:70]"},   # gap
                   {"embed.weight[20:70]": "embed.weight[20:60]"}):  # short
        (old, new), = broken.items()
        bad = QuantPlan({(new if n == old else n): g for n, g in plan.groups.items()})
        with pytest.raises(InputError, match="do not tile"):
            bad.validate(m)
    bad = QuantPlan({**plan.groups, "embed.weight[x:y]": plan.groups["embed.weight[0:20]"]})
    with pytest.raises(InputError, match="bad row band"):
        bad.validate(m)
    again = QuantPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


def test_bands_get_their_own_scales_and_pack_bit_identically(tmp_path):
    m = model_of()
    with torch.no_grad():  # make the first rows much larger: one shared scale would fit them badly
        m.embed.weight[:10] *= 20
    plan = QuantPlan.uniform(m, 2, bands=[10, 30])
    plan.groups["embed.weight[0:10]"].bits = 8
    plan.groups["embed.weight[30:70]"].bits = 32  # a float band
    plan.groups["embed.weight[10:30]"].per_row = True
    orig = m.embed.weight.detach().clone()
    plan = quantize_model(m, plan)
    e = m.embed.weight.detach()
    assert torch.equal(e[30:], orig[30:])
    assert len(plan.groups["embed.weight[10:30]"].scales) == 20
    for r in range(10, 30):
        assert len(torch.unique(e[r])) <= 3
    assert len(torch.unique(e[:10])) > 3
    assert float((e[:10] - orig[:10]).abs().max()) < float(orig[:10].abs().max()) / 100
    rep = plan.size_report(m)
    assert rep["groups"]["embed.weight[0:10]"]["numel"] == 80
    n_layer = sum(p.numel() for n, p in weight_groups(m).items() if n != "embed.weight")
    assert rep["avg_bits"] == pytest.approx((80 * 8 + 160 * 2 + 320 * 32 + n_layer * 2) / (560 + n_layer))
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(68)])
    save_packed(tmp_path / "q", m, plan, vocab)
    back, _, plan2 = load_packed(tmp_path / "q")
    assert plan2 == plan
    assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), back.state_dict().values()))


def test_band_traces_add_up_to_the_matrix_trace():
    m = model_of()
    torch.manual_seed(1)
    x = torch.randint(2, 70, (3, 9))
    batch = Batch(x[:, :-1], x[:, 1:], tokens=24, global_tokens=24)
    whole = hutchinson_traces(m, [batch], tol=0.0, max_samples=5, seed=4)
    names = group_names(m, 3)
    banded = hutchinson_traces(m, [batch], tol=0.0, max_samples=5, seed=4, groups=names)
    assert set(banded["trace"]) == set(names)
    bands = sum(v for n, v in banded["trace"].items() if n.startswith("embed.weight["))
    assert bands == pytest.approx(whole["trace"]["embed.weight"], rel=1e-5)
    assert banded["trace"]["layers.0.ff.fc1.weight"] == pytest.approx(whole["trace"]["layers.0.ff.fc1.weight"])


def write_lm_and_texts(d, texts, words=12, lines=60):
    """A saved 70-word model in ``d/lm`` and random sentences of its words in each of ``texts``."""
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(68)])
    save_lm(d / "lm", model_of(), vocab)
    g = torch.Generator().manual_seed(0)
    for t in texts:
        sents = [" ".join(f"w{int(i)}" for i in torch.randint(0, 68, (words,), generator=g)) for _ in range(lines)]
        (d / t).parent.mkdir(parents=True, exist_ok=True)
        (d / t).write_text("\n".join(sents) + "\n")


@pytest.mark.parametrize("method", ["hessian", "search", "admm", "ste"])
def test_cli_methods_with_bands(tmp_path, method):
    write_lm_and_texts(tmp_path, ["t.txt"])
    args = ["quantize", str(tmp_path / "lm"), str(tmp_path / "q"), "--method", method, "--bands", "3",
            "--train", str(tmp_path / "t.txt"), "--valid", str(tmp_path / "t.txt"), "--steps", "4",
            "--tokens-per-batch", "128", "--hessian-max-samples", "3", "--hessian-batches", "1",
            "--project-every", "2", "--final-steps", "2"]
    args += ["--bits", "2"] if method in ("admm", "ste") else ["--budget-bits", "2"]
    assert main(args) == 0
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [n for n in res["plan_bits"] if n.startswith("embed")] == [
        "embed.weight[0:10]", "embed.weight[10:30]", "embed.weight[30:70]"]
    assert res["avg_bits"] <= 2.0 + 1e-9
    if method == "hessian":
        assert set(res["record"]["hessian"]["trace"]) == set(res["plan_bits"])
    if method != "ste":  # ADMM (also behind hessian and search) ends with the frozen-code steps
        assert len(res["record"]["final"]) == 1
    model, _, plan = load_packed(tmp_path / "q")
    for n, gp in plan.groups.items():
        param, rows = split_group(n)
        w = model.get_parameter(param).detach()
        w = w if rows is None else w[rows[0]:rows[1]]
        if gp.bits <= 2:
            assert len(torch.unique(w)) <= 3, n
    bad = list(args)
    bad[bad.index("--bands") + 1] = "0"
    bad[2] = str(tmp_path / "bad")
    assert main(bad) == 1
    assert not (tmp_path / "bad").exists()


def test_quantize_step_script_with_bands(tmp_path, repo_dir):
    import os
    import subprocess
    write_lm_and_texts(tmp_path, [f"data/{s}.txt" for s in ("train", "valid", "test")], words=10, lines=30)
    env = dict(os.environ)
    env["PATH"] = f"{repo_dir / '.venv' / 'bin'}:{env['PATH']}"
    r = subprocess.run(["bash", str(repo_dir / "steps" / "quantize.sh"), "--method", "hessian", "--budget-bits", "2",
                        "--bands", "2", "--steps", "2", "--extra-opts",
                        "--tokens-per-batch 128 --hessian-max-samples 2 --hessian-batches 1 --threads 1",
                        str(tmp_path / "lm"), str(tmp_path / "data"), str(tmp_path / "q")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert "embed.weight[0:23]" in res["plan_bits"] and res["test_ppl"] > 1
    assert (tmp_path / "q" / "log" / "quantize.log").exists()
