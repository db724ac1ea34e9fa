"""local/mini/get_wikitext2.py: a local copy checked against pinned checksums, else a checked download."""

import hashlib
import importlib.util
import lzma
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("get_wikitext2", REPO / "local/mini/get_wikitext2.py")
gw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gw)


@pytest.fixture
def fake_corpus(tmp_path, monkeypatch):
    """Three small 'splits' served from file:// URLs, with their checksums pinned in place of the real ones."""
    src = tmp_path / "remote"
    src.mkdir()
    for s in gw.SPLITS:
        data = f" = {s} = \n the {s} text \n".encode()
        (src / f"{s}.txt").write_bytes(data)
        monkeypatch.setitem(gw.MD5, s, hashlib.md5(data).hexdigest())
        monkeypatch.setitem(gw.SHA256, s, hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(gw, "URL", f"file://{src}/{{split}}.txt")
    monkeypatch.delenv("ASR_LM_QUANT_WIKITEXT2", raising=False)
    return src


def test_local_copy_first_then_download(fake_corpus, tmp_path, capsys):
    local = tmp_path / "local"
    local.mkdir()
    for s in gw.SPLITS:  # an xz copy is read as the same content
        (local / f"{s}.txt.xz").write_bytes(lzma.compress((fake_corpus / f"{s}.txt").read_bytes()))
    assert gw.main(["--search", str(local), "--dest", str(tmp_path / "dl")]) == 0
    assert capsys.readouterr().out.strip() == str(local) and not (tmp_path / "dl").exists()
    # Nothing local: downloaded, checked, and found again without downloading on the next run.
    assert gw.main(["--search", str(tmp_path / "none"), "--dest", str(tmp_path / "dl")]) == 0
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["test.txt", "train.txt", "valid.txt"]
    (fake_corpus / "train.txt").unlink()
    assert gw.main(["--search", str(tmp_path / "dl"), "--dest", str(tmp_path / "dl")]) == 0


def test_wrong_content_is_an_error_not_a_silent_replacement(fake_corpus, tmp_path, capsys):
    local = tmp_path / "local"
    local.mkdir()
    for s in gw.SPLITS:
        (local / f"{s}.txt").write_bytes((fake_corpus / f"{s}.txt").read_bytes())
    (local / "valid.txt").write_bytes(b"truncated")
    assert gw.main(["--search", str(local), "--dest", str(tmp_path / "dl")]) == 1
    err = capsys.readouterr().err
    assert "valid.txt: content does not match WikiText-2's valid split" in err
    (local / "valid.txt").unlink()
    assert gw.main(["--search", str(local), "--dest", str(tmp_path / "dl")]) == 1
    assert "has some WikiText-2 splits but no valid.txt" in capsys.readouterr().err
    # A download whose content differs from the pinned checksum is refused and not kept.
    (fake_corpus / "test.txt").write_bytes(b"tampered")
    assert gw.main(["--dest", str(tmp_path / "dl2")]) == 1
    assert "does not match the pinned sha256" in capsys.readouterr().err
    assert not (tmp_path / "dl2" / "test.txt").exists()


def test_unreachable_source_says_what_to_do(fake_corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gw, "URL", f"file://{tmp_path}/missing/{{split}}.txt")
    assert gw.main(["--dest", str(tmp_path / "dl")]) == 1
    err = capsys.readouterr().err
    # What works from `make quick`/`make demo` (which pass no options) comes first.
    assert "set ASR_LM_QUANT_WIKITEXT2=DIR (this works for `make quick` and `make demo` too)" in err
    assert "--corpus-dir" in err


def test_the_source_used_is_named(fake_corpus, tmp_path, monkeypatch, capsys):
    local = tmp_path / "env_copy"
    local.mkdir()
    for s in gw.SPLITS:
        (local / f"{s}.txt").write_bytes((fake_corpus / f"{s}.txt").read_bytes())
    monkeypatch.setenv("ASR_LM_QUANT_WIKITEXT2", str(local))
    assert gw.main(["--search", str(tmp_path / "none"), "--dest", str(tmp_path / "dl")]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(local)
    assert f"WikiText-2 found in {local} (from $ASR_LM_QUANT_WIKITEXT2)" in out.err


def test_pinned_checksums_match_the_shared_copy(shared_dir):
    d = shared_dir / "data" / "wikitext-2"
    assert gw.verified(d)
    for s in gw.SPLITS:
        assert gw.digests(d / f"{s}.txt.xz")[1] == gw.SHA256[s]
