import importlib.util
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ASR_LM_QUANT_SHARED", REPO.parent / "shared"))


def _load_tiny():
    """tests/fixtures/rescore/tiny.py: the tiny rescoring set-up (LM dir, ARPA, words.txt, decode dirs)."""
    spec = importlib.util.spec_from_file_location("rescore_tiny", REPO / "tests/fixtures/rescore/tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY = _load_tiny()

# Tests run two at a time on small machines; one thread each keeps them from fighting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"reads real data from ../shared (WikiText-2, a real Kaldi lattice, NIST's GLM), not found at "
                    f"{SHARED}; set ASR_LM_QUANT_SHARED to a copy to run it")
    return SHARED


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


def fails(capsys, argv, *expect):
    """Run the CLI; it must fail with one line naming each of ``expect``, and no traceback."""
    from asr_lm_quant.cli import main
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if ": error: " in x]
    assert rc != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    for e in expect:
        assert e in lines[0], lines[0]
    return lines[0]
