"""The training-throughput benchmark: its FLOP count, and one tiny end-to-end run (seconds)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from asr_lm_quant.lm.model import LMConfig

BENCH = Path(__file__).resolve().parents[1] / "bench"
TINY_CONFIG = Path(__file__).resolve().parents[1] / "recipes" / "mini" / "conf" / "lm_tiny.json"


@pytest.fixture
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_train", BENCH / "bench_train.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_flops_per_token_counts_products_and_causal_attention(bench):
    cfg = LMConfig(vocab_size=10000, d_model=128, n_layers=2, n_heads=4, d_ff=512)
    f = bench.flops_per_token(cfg, mean_len=31)
    assert f["layers"] == 6 * 2 * (4 * 128 * 128 + 2 * 128 * 512)  # in, out projections and the feed-forward
    assert f["output_layer"] == 6 * 128 * 10000
    assert f["attention"] == 3 * 2 * 2 * 32 * 128  # forward 2 (T + 1) d per layer, backward twice that
    assert f["total"] == f["layers"] + f["output_layer"] + f["attention"]


def test_throughput_run_writes_its_json(bench, shared_dir, tmp_path, monkeypatch):
    wikitext = shared_dir / "data" / "wikitext-2"
    if not (wikitext / "train.txt.xz").exists():
        pytest.skip("no WikiText-2")
    monkeypatch.setattr(bench, "WIKITEXT", wikitext)
    monkeypatch.setitem(bench.CONFIGS, "tiny", (TINY_CONFIG, 500))
    out = tmp_path / "t.json"
    bench.main(["--throughput", "--throughput-config", "tiny", "--steps", "2", "--sentences", "400", "--threads",
                "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["machine"] and r["date"].endswith("UTC") and r["threads"] == 1
    assert r["matmul_gflops"]["float32"] > 0 and r["fp32_flops_per_token"]["output_layer"] == 6 * 32 * 500
    for v in ("fp32", "bf16"):
        res = r["variants"][v]
        assert res["tokens_per_s"] > 0 and res["useful_gflops"] > 0
        assert len(res["share_per_step"]) == 2 and res["share_of_fp32_matmul_rate"] > 0
        assert sum(res["share_of_step"].values()) == pytest.approx(1.0)
