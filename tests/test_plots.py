"""The report's and the quantization sweep's plots read on their own: a colour and marker per system, bit widths as
ticks, plain tick labels on log axes, legends off the data, short group names that do not overlap."""

import json
from pathlib import Path

import pytest

from asr_lm_quant.plotstyle import MARKERS, short_group, system_styles
from asr_lm_quant.quant import plots as qplots
from asr_lm_quant.report import plots

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "recipes" / "mini" / "results" / "results.json"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def res():
    return json.loads(RESULTS.read_text())


def _labels(ticks):
    return [t.get_text() for t in ticks]


def _labels_apart(fig, ax):
    """Rotated x tick labels are parallel lines of text: neighbours do not touch when the distance between their
    baselines (tick spacing times the sine of the angle) is at least the font's height."""
    import math
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    xs = [ax.transData.transform((x, 0))[0] for x in ax.get_xticks()]
    height_px = max(t.get_fontsize() for t in labels) * fig.dpi / 72
    angle = math.radians(labels[0].get_rotation())
    assert all(t.get_rotation() == labels[0].get_rotation() for t in labels) and 0 < angle <= math.pi / 2
    gaps = [b - a for a, b in zip(xs, xs[1:])]
    assert min(gaps) * math.sin(angle) >= height_px, (min(gaps), height_px)


def test_system_styles_are_distinct_pairs_and_distinct_markers():
    names = [f"s{i}" for i in range(40)]
    st = system_styles(names)
    pairs = {(v["color"], v["marker"]) for v in st.values()}
    assert len(pairs) == 40
    assert len({st[n]["marker"] for n in names[:len(MARKERS)]}) == len(MARKERS)
    assert len({st[n]["color"] for n in names[:12]}) == 12  # a recipe's dozen systems all differ in colour
    assert system_styles(["a", "b", "a"]) == system_styles(["a", "b"])


def test_short_group_names():
    assert short_group("layers.0.attn.in_proj.weight") == "L0 attn in"
    assert short_group("layers.11.attn.out_proj.weight") == "L11 attn out"
    assert short_group("layers.1.ff.fc2.weight") == "L1 ff2"
    assert short_group("embed.weight[39:118]") == "embed 39:118"
    assert short_group("out.weight") == "out"


def test_size_plot_one_style_per_system_legend_beside_and_plain_log_ticks(res):
    fig = plots.size_tradeoff_figure(res["systems"], res["first_pass"]["wer_first_pass"])
    fig.canvas.draw()
    axes = fig.axes
    assert [a.get_ylabel() for a in axes] == ["eval WER after N-best rescoring (%)",
                                              "eval WER after lattice rescoring (%)", "test perplexity"]
    names = [s["name"] for s in res["systems"] if s.get("size_mb")]
    for ax in axes:
        styles = {}
        for coll in ax.collections:
            marker_path = coll.get_paths()[0]
            styles[coll.get_label()] = (tuple(coll.get_edgecolor()[0]), marker_path.vertices.tobytes())
        assert set(styles) == set(names)  # lm is drawn, not hidden under lm_deep
        assert len(set(styles.values())) == len(names)
        assert not ax.texts  # no labels on the points to collide
        assert ax.get_xscale() == "log"
        ticks = [t for t in _labels(ax.get_xticklabels()) if t]
        assert len(ticks) >= 4 and ticks == ["0.5", "1", "2", "5", "10"]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == names + ["first pass (3-gram)"]
    # The legend lies right of every axes, covering no data.
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= max(ax.get_window_extent(renderer).x1 for ax in axes)
    fig.clf()


def test_wer_vs_weight_eleven_systems_eleven_styles_plain_labels(res):
    fig = plots.wer_vs_weight_figure(res["systems"])
    fig.canvas.draw()
    nbest, lattice = fig.axes
    assert nbest.get_ylabel() == "WER on the dev half (%)"
    assert nbest.get_xlabel() == "interpolation weight of the Transformer LM"
    lines = nbest.get_lines()
    assert len(lines) == 11
    assert len({(ln.get_color(), ln.get_marker()) for ln in lines}) == 11
    assert len({ln.get_color() for ln in lines}) == 11 and len({ln.get_marker() for ln in lines}) == 11
    assert _labels(nbest.get_xticklabels()) == ["0.5", "0.7", "0.9"]
    assert nbest.get_legend() is None and lattice.get_legend() is None  # one legend, beside the axes
    renderer = fig.canvas.get_renderer()
    assert fig.legends[0].get_window_extent(renderer).x0 >= lattice.get_window_extent(renderer).x1
    fig.clf()


def test_bits_per_layer_ticks_are_bit_widths_and_labels_do_not_overlap(res):
    fig = plots.bits_per_layer_figure(res["systems"])
    fig.canvas.draw()
    mixed = [s for s in res["systems"] if s.get("plan_bits") and s["method"] in ("hessian", "kl", "search")]
    assert len(fig.axes) == len(mixed) == 5
    for ax, s in zip(fig.axes, mixed):
        widths = sorted(set(s["plan_bits"].values()))
        assert [float(t) for t in ax.get_yticks()] == [float(w) for w in widths]
        assert _labels(ax.get_yticklabels()) == [str(w) for w in widths]
        assert _labels(ax.get_xticklabels()) == [short_group(n) for n in s["plan_bits"]]
        assert all(t.get_fontsize() >= 8 for t in ax.get_xticklabels())
        _labels_apart(fig, ax)
        # Each bar carries its bit width.
        assert [t.get_text() for t in ax.texts] == [str(b) for b in s["plan_bits"].values()]
    fig.clf()


def test_report_plots_are_pngs(res, tmp_path):
    made = plots.write_plots(res, tmp_path)
    assert made == ["bits_per_layer.png", "wer_vs_lm_weight.png", "size_vs_wer_ppl.png", "first_pass_lmwt.png"]
    for name in made:
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_quant_sweep_bits_table_and_size_plot(tmp_path):
    bits = {"hessian-2": {"embed.weight[0:4]": 8, "embed.weight[4:12]": 2, "layers.0.ff.fc1.weight": 1},
            "deep": {"embed.weight": 16, "layers.0.ff.fc1.weight": 4, "layers.1.ff.fc1.weight": 3}}
    fig = qplots.bits_figure(bits)
    ax, bar = fig.axes
    assert _labels(ax.get_yticklabels()) == ["hessian-2", "deep"]
    assert _labels(ax.get_xticklabels()) == ["embed 0:4", "embed 4:12", "L0 ff1", "embed", "L1 ff1"]
    assert _labels(bar.get_yticklabels()) == ["1", "2", "3", "4", "8", "16"]
    # Every cell shows its bits; the deep model's bands take its whole embedding's 16; hessian-2 has neither an
    # unsplit embedding nor layer 1 (blank cells).
    assert [t.get_text() for t in ax.texts] == ["8", "2", "1", "16", "16", "4", "16", "3"]
    _labels_apart(fig, ax)
    fig.clf()
    rows = [{"name": f"s{i}", "size_mb": 0.3 * (i + 1), "valid_ppl": 100 + i} for i in range(12)]
    fig = qplots.size_ppl_figure(rows)
    ax = fig.axes[0]
    assert not ax.texts and len({(tuple(c.get_edgecolor()[0]), c.get_paths()[0].vertices.tobytes())
                                 for c in ax.collections}) == 12
    assert ax.get_ylabel() == "valid perplexity"
    assert "1" in _labels(ax.get_xticklabels()) and "2" in _labels(ax.get_xticklabels())
    fig.clf()
    qplots.plot_bits(bits, tmp_path / "b.png")
    qplots.plot_size_ppl(rows, tmp_path / "s.png")
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG and (tmp_path / "s.png").read_bytes()[:8] == PNG
