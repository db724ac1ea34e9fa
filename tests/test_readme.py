"""README.md as a user reads it: short, the newcomer's route on its first screen, and every command block in it
either run here (on a tiny set-up with the README's own paths) or marked, visibly, as not run and why.

A shell block whose first line is ``# (not run by the tests: REASON)`` is not run; every other ``sh`` block runs
with bash in one scratch directory, in README order (a later block reads what an earlier one wrote), and every
``python`` block runs there twice (a second run must work as the first did). Also: the command table names
every subcommand, the headline results agree with the demo's results.json, links lead somewhere, and the
benchmark tables are what bench/make_tables.py makes of their JSON.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
from conftest import TINY as tiny  # noqa: E402

NOT_RUN = re.compile(r"^# \(not run by the tests: (?P<reason>[^)]{10,})\)$")
BLOCK = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<code>.*?)^```$", re.S | re.M)


def blocks(text=None):
    return [(m.group("lang"), m.group("code")) for m in BLOCK.finditer(text or README.read_text())]


def runnable(code: str) -> bool:
    return not NOT_RUN.match(code.splitlines()[0])


# --- what the README is -------------------------------------------------------------------------------------


def test_short_with_the_newcomers_route_on_its_first_screen():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:40])
    for what in ("git clone", "make test", "make quick", "recipes/mini/quick/exp/results.md",
                 "recipes/mini/quick/exp/plots/", "size_vs_wer_ppl.png"):
        assert what in first_screen, what


def test_every_block_is_run_or_marked_with_a_reason():
    found = blocks()
    assert found and {lang for lang, _ in found} <= {"sh", "python"}
    marked = [code.splitlines()[0] for lang, code in found if lang == "sh" and not runnable(code)]
    run = [code for lang, code in found if lang == "sh" and runnable(code)]
    # What cannot run here says so: installing (make), the recipe that takes minutes, nothing else.
    assert len(marked) == 3 and all("make" in code for lang, code in found if lang == "sh" and not runnable(code))
    assert len(run) == 3 and sum(lang == "python" for lang, _ in found) == 1
    # A marker that does not match the pattern exactly is not a marker: such a block would be run.
    assert runnable("# not run by the tests: x\nmake demo\n") and runnable("# (not run by the tests: )\nls\n")


def test_offline_corpus_is_explained():
    text = README.read_text()
    assert "ASR_LM_QUANT_WIKITEXT2" in text and "--corpus-dir" in text


def _subcommands():
    from asr_lm_quant.cli import build_parser
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


def test_command_table_has_one_line_per_subcommand():
    rows = re.findall(r"^\| `([\w-]+)` \| ", README.read_text(), re.M)
    assert len(rows) == len(set(rows))
    assert set(rows) == _subcommands()


def test_headline_results_are_the_demos():
    res = json.loads((REPO / "recipes/mini/results/results.json").read_text())
    systems = {s["name"]: s for s in res["systems"]}
    fp = res["first_pass"]
    text = README.read_text()
    table = text[text.index("## Results"):text.index("## Documentation")]
    rows = [r.strip("|").split("|") for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) >= 5
    for cells in rows:
        cells = [c.strip() for c in cells]
        name = cells[0].split()[0]
        if name == "3-gram":
            assert cells[3] == f"{fp['arpa_mb']:.1f} (ARPA)" and cells[4] == f"{fp['test_ppl']:.1f}"
            assert cells[5] == cells[6] == f"{fp['wer_first_pass']:.2f}"
            continue
        s = systems[name]
        assert cells[2] == (f"{s['avg_bits']:g}" if s["avg_bits"] == 32 else f"{s['avg_bits']:.2f}")
        assert cells[3] == f"{s['size_mb']:.3f}" and cells[4] == f"{s['test_ppl']:.1f}"
        assert cells[5] == f"{s['wer_nbest']:.2f}" and cells[6] == f"{s['wer_lattice']:.2f}"
    gains = [fp["wer_first_pass"] - s[k] for s in res["systems"] for k in ("wer_nbest", "wer_lattice")]
    assert f"by {min(gains):.1f} to {max(gains):.1f} points" in table
    assert f"({systems['q_deep-hessian-at-base-fp-size']['wer_lattice']:.2f} against " \
           f"{systems['lm']['wer_lattice']:.2f})" in table
    assert f"eval half ({res['oracle_eval']['utterances']} utterances)" in table


def test_links_lead_somewhere():
    # docs/cli.md is written with the command-line conventions; every other link must resolve here.
    pages = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "bench/results/README.md"]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[\w-]+)?\)", page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            assert path.exists() or path == REPO / "docs/cli.md", f"{page.name}: {target}"


def test_benchmark_tables_are_made_from_their_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_tables", REPO / "bench/make_tables.py")
    mt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mt)
    assert mt.main(["--check"]) == 0, capsys.readouterr().err
    # A number changed in a JSON makes its table and the page showing it stale, and a rerun brings them back.
    results = tmp_path / "results"
    shutil.copytree(REPO / "bench/results", results)
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    data = json.loads((results / "self_norm_wt2_sample.json").read_text())
    data["alphas"]["0.5"]["ppl_exact"] = 600.0
    (results / "self_norm_wt2_sample.json").write_text(json.dumps(data))
    assert mt.main(["--check", "--results", str(results), "--docs", str(docs)]) == 1
    err = capsys.readouterr().err
    assert "self_norm_wt2_sample.md" in err and "benchmarks.md" in err and "quantization.md" not in err
    assert mt.main(["--results", str(results), "--docs", str(docs)]) == 0
    assert "| 0.5 | 600.0 |" in (docs / "benchmarks.md").read_text()
    assert mt.main(["--check", "--results", str(results), "--docs", str(docs)]) == 0



def test_every_benchmark_table_has_its_json_and_its_run_noted(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_tables", REPO / "bench/make_tables.py")
    mt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mt)
    results = REPO / "bench/results"
    # Every table beside the JSON is made from it, and every table made has its JSON.
    tables = {p.stem for p in results.glob("*.md")} - {"README"}
    assert tables == {stem for stem in mt.TABLES if "/" not in stem}
    assert all((results / f"{stem}.json").exists() for stem in mt.TABLES)
    # A JSON that does not record its date and load gets them from its row of the notes, in the caption.
    note = mt.run_note(results, "packed_inference")
    assert note.startswith("Run: 2026-") and note in (results / "packed_inference.md").read_text().split("\n\n")[0]
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    readme = copy / "README.md"
    readme.write_text("".join(x for x in readme.read_text().splitlines(keepends=True)
                              if not x.startswith("| `pruned_lattice.json`")))
    with pytest.raises(SystemExit, match=r"README.md: no row for `pruned_lattice.json`"):
        mt.main(["--check", "--results", str(copy), "--docs", str(REPO / "docs")])
    # A JSON in a layout its table code does not read: one line naming the file and the key, nothing written.
    data = json.loads((copy / "eval2000_projection.json").read_text())
    del data["repeats"]
    (copy / "eval2000_projection.json").write_text(json.dumps(data))
    before = (copy / "eval2000_projection.md").read_text()
    with pytest.raises(SystemExit, match=r"eval2000_projection.json: not the layout .*KeyError: 'repeats'"):
        mt.main(["--results", str(copy), "--docs", str(tmp_path / "no-docs")])
    assert (copy / "eval2000_projection.md").read_text() == before


# --- the blocks, run ----------------------------------------------------------------------------------------

def _nbest_files(play: Path) -> None:
    """dev/test n-best lists (each utterance's reference among wrong hypotheses) and their references."""
    lines = [x for x in (REPO / "tests/fixtures/rescore/corpus.txt").read_text().splitlines() if len(x.split()) >= 3]
    header = "utterance\trank\ttext\tacoustic_cost\tlm_cost\n"
    for part, chunk in (("dev", lines[:8]), ("test", lines[8:16])):
        hyps, refs = [header], []
        for i, ref in enumerate(chunk):
            utt = f"{part}-{i:02d}"
            words = ref.split()
            wrong = [words[:-1], words + ["the"], [words[0], "zebra", *words[2:]]]
            for rank, (hyp, ac) in enumerate(((words, 51.0), *((w, 50.0 + k) for k, w in enumerate(wrong))), 1):
                hyps.append(f"{utt}\t{rank}\t{' '.join(hyp)}\t{ac:.1f}\t{4.0 * len(hyp):.1f}\n")
            refs.append(f"{utt} {ref}\n")
        (play / f"{part}_hyps.tsv").write_text("".join(hyps))
        (play / f"{part}_text").write_text("".join(refs))


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """A scratch directory holding every path the README's blocks name, as a user's would."""
    play = tmp_path_factory.mktemp("readme")
    t = tiny.build(play)
    tiny.build_kaldi_decode_dir(t, utts=8, jobs=2)  # exp/tri1/{graph,decode_test}, data/test
    (play / "exp" / "lm").symlink_to(play / "lm")
    (play / "data/local/lm").mkdir(parents=True)
    shutil.copy(t["arpa"], play / "data/local/lm/3gram.arpa")
    shutil.copy(t["arpa"], play / "first_pass.arpa")
    for d in ("steps", "recipes"):
        (play / d).symlink_to(REPO / d)
    _nbest_files(play)
    shutil.copy(play / "dev_hyps.tsv", play / "hyps.tsv")
    corpus = (REPO / "tests/fixtures/rescore/corpus.txt").read_text().splitlines()
    (play / "corpus").mkdir()
    for name, part in (("train", corpus[:90]), ("valid", corpus[90:105]), ("test", corpus[105:])):
        (play / "corpus" / f"{name}.txt").write_text("\n".join(part) + "\n")
    return play


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


# Until every command takes the canonical option names, the names this checkout's command accepts instead.
@pytest.mark.slow
def test_shell_blocks_run(play):
    runs = [code for lang, code in blocks() if lang == "sh" and runnable(code)]
    for code in runs:
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=play, env=_env(),
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{code}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    # Route 1: rescored decode dirs, scored as Kaldi scores them; the first pass scored beside them.
    for d in ("decode_test_nbest", "decode_test_lattice", "decode_test"):
        best = (play / "exp/tri1" / d / "scoring_kaldi/best_wer").read_text()
        assert best.startswith("%WER "), best
    assert (play / "exp/tri1/decode_test_lattice/num_jobs").read_text().strip() == "2"
    # Route 2: the test set's 1-best at the dev set's choice.
    decision = json.loads((play / "exp/decided/decision.json").read_text())
    assert decision["setting"]["weight"] in (0.5, 0.8)
    test_text = (play / "exp/decided/test/text").read_text().splitlines()
    assert [x.split()[0] for x in test_text] == [f"test-{i:02d}" for i in range(8)]
    # Your own LM: trained, quantized to 4 bits.
    assert json.loads((play / "exp/my_lm_4bit/results.json").read_text())["avg_bits"] == 4.0


def test_python_block_runs_and_reruns(play, monkeypatch):
    code = next(code for lang, code in blocks() if lang == "python")
    monkeypatch.chdir(play)
    for attempt in (1, 2):  # the second run replaces exp/lm_4bit, as overwrite=True asks
        env = {}
        exec(compile(code, "README.md", "exec"), env)
        assert env["costs"].shape == (2,) and (env["costs"] > 0).all()
        assert sorted(env["one_best"]) == [f"dev-{i:02d}" for i in range(8)]
        assert env["results"]["avg_bits"] == 4.0
        assert (play / "exp/lm_4bit").is_dir()
    # Without overwrite=True a rerun stops rather than replace the model.
    from asr_lm_quant import api
    from asr_lm_quant.errors import InputError
    with pytest.raises((InputError, FileExistsError), match="exp/lm_4bit"):
        api.quantize("exp/lm", "exp/lm_4bit", method="ptq", bits=4)


def test_demo_tables_in_the_docs_are_the_reports():
    """docs/demo-results.md shows the report's tables as the report wrote them (results.md), row for row."""
    page = (REPO / "docs/demo-results.md").read_text()
    report = set((REPO / "recipes/mini/results/results.md").read_text().splitlines())
    rows = [line for line in page.splitlines() if line.startswith("|")]
    assert len(rows) > 50 and [r for r in rows if r not in report] == []
    assert "(300 eval utterances" not in page
