import json
import subprocess
import sys

import pytest
import torch

from asr_lm_quant.errors import InputError
from asr_lm_quant.lm.files import load_lm, save_lm
from asr_lm_quant.lm.model import LMConfig, TransformerLM
from asr_lm_quant.text.vocab import Vocabulary


def small_model(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=12, d_model=16, n_heads=2, d_ff=32, n_layers=2)
    cfg.update(kw)
    return TransformerLM(LMConfig(**cfg)).eval()


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_incremental_matches_full(norm):
    m = small_model(norm=norm)
    t = torch.randint(0, 12, (3, 9))
    full = m(t)
    a, past = m(t[:, :4], return_past=True)
    b = m(t[:, 4:], past=past)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-5)


def test_causal():
    m = small_model()
    t = torch.randint(0, 12, (1, 8))
    t2 = t.clone()
    t2[0, 5] = (t2[0, 5] + 1) % 12
    torch.testing.assert_close(m(t)[:, :5], m(t2)[:, :5])
    assert not torch.allclose(m(t)[:, 5:], m(t2)[:, 5:])


def test_save_load_roundtrip(tmp_path):
    m = small_model()
    vocab = Vocabulary(["<s>", "<unk>"] + [f"w{i}" for i in range(10)])
    save_lm(tmp_path, m, vocab)
    m2, v2 = load_lm(tmp_path)
    assert v2.words == vocab.words
    assert m2.out.weight is m2.embed.weight
    t = torch.randint(0, 12, (2, 5))
    torch.testing.assert_close(m(t), m2(t), atol=0, rtol=0)
    assert json.loads((tmp_path / "config.json").read_text())["model"]["vocab_size"] == 12


def test_vocab_errors(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("<s> 0\n<unk> 1\nfoo 3\n")
    with pytest.raises(InputError, match=r"words.txt, line 3: id 3 out of order"):
        Vocabulary.load(p)
    p.write_text("<s> 0\n<unk> 1\n<s> 2\n")
    with pytest.raises(InputError, match="line 3"):
        Vocabulary.load(p)


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "asr_lm_quant.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "asr-lm-quant" in out.stdout


def test_atomic_write_mode_and_cleanup(tmp_path):
    import os
    import stat

    from asr_lm_quant.atomic import atomic_open

    old = os.umask(0o022)
    try:
        with atomic_open(tmp_path / "a.txt") as f:
            f.write("x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "b.txt") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with pytest.raises(FileExistsError):
        with atomic_open(tmp_path / "a.txt", overwrite=False):
            pass
