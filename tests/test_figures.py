"""The paper's figures (report.figures) and tables in its layout (report.tables), drawn from long tables
of known content; and, end to end on config/tiny.yaml, one job per figure and table, the Snakemake
report with every one of them, and a plotting setting that reruns only its own figure."""

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from neuronaudit.report import figures
from neuronaudit.report import paper_tables as tables
from neuronaudit.report.paper import PAPER_TABLE4, paper_score

from .conftest import run_snakemake

NS = (25, 100, 400, 1600)


def _setting1(guides=("probe", "conse"), pairs=40):
    rows = [(g, s, n, (1 if s == "uniform" else 0.5 if s == "mg_is" else 0.8) / np.sqrt(n), 0.01, pairs)
            for g in guides for s in ("uniform", "mg_is", "ag_is") for n in NS]
    return pd.DataFrame(rows, columns=["concept_model", "sampler", "n", "rce", "sem", "n_pairs"])


def _setting2_prior():
    rows = []
    for cm in ("probe", "conse"):
        for n in NS:
            rows.append((cm, "model-only", "model_only", 0, n, 0.3, 0.01, 10))
            for r in (1, 3):
                for role, agg, level in (("human", "bragg_uniform", 0.6), ("hybrid", "bragg_model", 0.2),
                                         ("majority", "majority", 0.7)):
                    rows.append((cm, role, agg, r, n, level / np.sqrt(r), 0.01, 10))
    return pd.DataFrame(rows, columns=["concept_model", "role", "aggregation", "n_raters", "n", "rce", "sem", "n_pairs"])


def _labels(ax):
    return ax.get_legend_handles_labels()[1]


def _texts(fig):
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts) + " " + " ".join(t.get_text() for t in fig.texts)


def test_equal_error_ratio_on_planted_curves():
    t = _setting1()
    u, g = t[(t.sampler == "uniform") & (t.concept_model == "probe")], t[(t.sampler == "mg_is") & (t.concept_model == "probe")]
    # MG-IS's RCE is half of uniform's at every n and falls as 1/sqrt(n): it reaches uniform's error at
    # n = 1600 with 1600 / 4 = 400 inputs, so 4x fewer
    ratio, bound = figures.equal_error_ratio(u, g)
    assert ratio == pytest.approx(4.0) and not bound
    ratio, bound = figures.equal_error_ratio(u, g.assign(rce=g.rce / 100))  # below it at the smallest n
    assert bound and ratio == pytest.approx(1600 / 25)
    assert figures.equal_error_ratio(u, g.assign(rce=g.rce * 10)) is None


def test_fig09_panels_lines_pairs_and_ratio_note():
    fig = figures.fig09_rce_vs_n(_setting1(pairs=37))
    assert [ax.get_title() for ax in fig.axes] == ["guide: conse", "guide: probe"]
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3 and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "RCE" in ax.get_ylabel() and "n" in ax.get_xlabel()
    assert all("(37 pairs)" in label for label in _labels(ax))
    assert np.all(np.diff(ax.get_lines()[0].get_ydata()) < 0)  # plotted in order of n
    assert "4.0x fewer inputs" in _texts(fig) and "paper ~13x" in _texts(fig)
    plt.close(fig)


def test_a_configured_guide_without_rows_is_said_on_the_figure():
    fig = figures.fig09_rce_vs_n(_setting1(guides=("probe",)), {"guides": ["probe", "siglip"]})
    assert len(fig.axes) == 2 and "no Setting-1 rows for guide 'siglip'" in _texts(fig)
    assert len(fig.axes[1].get_lines()) == 0
    fig = figures.fig12_guiding_model(_setting1(guides=("probe",)), {"guides": ["probe", "siglip"]})
    assert "siglip" in _texts(fig) and len(fig.axes) == 1
    plt.close("all")


def test_settings_change_the_drawing():
    t = _setting1()
    fig = figures.fig09_rce_vs_n(t, {"log_y": False, "samplers": ["uniform", "mg_is"], "width": 3, "title": "T"})
    assert fig.axes[0].get_yscale() == "linear" and len(fig.axes[0].get_lines()) == 2
    assert fig._suptitle.get_text() == "T" and fig.get_size_inches()[0] == pytest.approx(6)
    plt.close(fig)


def test_fig06_lines_model_level_and_design_line():
    cost = pd.DataFrame([("probe", a, r, n, 0.5 / np.sqrt(n * r), n * r * 0.004, 0.01, 12)
                         for a in ("majority", "bragg_uniform", "bragg_model") for r in (1, 3) for n in (25, 100)]
                        + [("probe", "model_only", 0, 25, 0.3, 0.0, 0.01, 12)],
                        columns=["concept_model", "aggregation", "n_raters", "n", "rce", "mean_cost", "sem", "n_pairs"])
    fig = figures.fig06_cost_vs_error(cost)
    ax = fig.axes[0]
    # aggregation x raters, the model-only level, the paper's design at 3 x 180 x $0.004
    assert len(ax.get_lines()) == 3 * 2 + 2 and "12 pairs" in ax.get_title()
    assert any(np.allclose(line.get_xdata(), 2.16) for line in ax.get_lines())
    fig = figures.fig06_cost_vs_error(cost, {"n_raters": [3], "aggregations": ["bragg_model"]})
    assert len(fig.axes[0].get_lines()) == 1 + 2
    plt.close("all")


def test_setting2_role_and_prior_figures():
    t = _setting2_prior()
    fig = figures.fig11_model_hybrid_human(t)
    assert len(fig.axes) == 2 and "3 raters" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_lines()) == 4
    hybrid = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("hybrid")][0]
    assert np.allclose(hybrid.get_ydata(), 0.2 / np.sqrt(3))  # the 3-rater rows, not the 1-rater ones
    fig = figures.fig11_model_hybrid_human(t, {"n_raters": 1})
    hybrid = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("hybrid")][0]
    assert np.allclose(hybrid.get_ydata(), 0.2)
    fig = figures.fig13_prior(t)
    assert sum(label.startswith("hybrid, prior") for label in _labels(fig.axes[0])) == 2
    plt.close("all")


def test_table4_bars_say_an_empty_bin():
    t4 = pd.DataFrame({"concept_model": "probe", "auc_bin": ["0.95-0.99", "0.95-0.99", "0.99-1", "0.99-1"],
                       "sampler": ["uniform", "mg_is"] * 2, "n": 180, "rce": [0.4, 0.2, np.nan, np.nan],
                       "sem": 0.01, "n_pairs": [5, 5, 0, 0]})
    fig = figures.table4_auc_bins(t4)
    assert len(fig.axes[0].patches) == 4
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.95-0.99\n(5 pairs)", "0.99-1\n(0 pairs)"]
    assert "no pairs" in _texts(fig) and "7.6x" in _texts(fig)
    plt.close(fig)


def test_draw_names_its_missing_table():
    with pytest.raises(ValueError, match="setting2_cost"):
        figures.draw("fig06_cost_vs_error", {"setting1_rce": _setting1()})
    with pytest.raises(ValueError, match="unknown figure"):
        figures.draw("fig99", {})


# --- tables ----------------------------------------------------------------------------------------

def test_significant_and_mean_pm_sem():
    assert [tables.significant(x) for x in (0.004626, 0.3231, 4.0755, 1234.5, 0.0)] == ["0.0046", "0.32", "4.1", "1200", "0"]
    assert tables.significant(float("nan")) == "n/a"
    assert tables.mean_pm_sem(0.12345, 0.0056, 3) == "0.123 ± 0.006"  # the long tables' format


def test_scores_table_layout_and_paper_columns():
    long = pd.DataFrame({"model": "m", "layer": "l", "method": ["clip_dissect", "le_probe", "clip_dissect", "le_probe"],
                         "concept_model": ["p", "p", "q", "q"], "mean": [0.12345, 0.2, 0.3, np.nan],
                         "sem": [0.01, 0.02, 0.03, np.nan], "n_common": 64})
    t = tables.scores_table(long)
    assert list(t.columns) == ["method", "m/l · p (n=64)", "m/l · q (n=64)", "paper RN50 layer4", "paper ViT-B/16 layer11"]
    assert t.loc[0].tolist() == ["clip_dissect", "0.123 ± 0.010", "0.300 ± 0.030", "0.187", "0.172"]
    assert t.loc[1, "m/l · q (n=64)"] == "n/a" and t.loc[1, "paper RN50 layer4"] == "0.377 (LE(SigLIP))"
    assert list(tables.scores_table(long, concept_models=["q"]).columns)[1] == "m/l · q (n=64)"
    assert paper_score("top_class", "rn50") == ""
    with pytest.raises(ValueError, match="n_common"):
        tables.scores_table(long.drop(columns="n_common"))


def test_auc_bins_table_rows_ratio_and_paper():
    long = pd.DataFrame({"concept_model": "g", "auc_bin": ["0.95-0.99", "0.95-0.99", "0.99-1", "0.99-1"],
                         "sampler": ["uniform", "mg_is"] * 2, "n": 180, "rce": [0.4, 0.1, np.nan, np.nan],
                         "sem": [0.01, 0.002, np.nan, np.nan], "n_pairs": [7, 7, 0, 0]})
    t = tables.auc_bins_table(long)
    assert list(t.columns) == ["guide", "sampler", "n", "0.95-0.99", "0.99-1"]
    rows = t.set_index(["guide", "sampler"])
    assert rows.loc[("g", "pairs"), "0.95-0.99"] == "7" and rows.loc[("g", "pairs"), "0.99-1"] == "no pairs"
    assert rows.loc[("g", "Uniform"), "0.95-0.99"] == "0.400 ± 0.010"
    assert rows.loc[("g", "uniform / MG-IS"), "0.95-0.99"] == "4.0x"
    assert rows.loc[("paper (SigLIP, ImageNet)", "MG-IS"), "0.99-1"] == f"{PAPER_TABLE4['MG-IS'][-1]:.3f}"
    assert rows.loc[("paper (SigLIP, ImageNet)", "uniform / MG-IS"), "0.99-1"] == "7.6x"


def test_runtime_and_downstream_tables():
    rt = pd.DataFrame({"model": "m", "layer": "l", "method": ["a", "b"], "n_neurons": 8, "device": "cpu",
                       "seconds": [0.0123, 3.456], "seconds_total": [1.0, 12345.0]})
    t8, t9 = tables.runtime_table(rt), tables.runtime_table(rt, "seconds")
    assert list(t8.columns) == ["method", "m/l (8 neurons, cpu) [s]"]
    assert t8.iloc[:, 1].tolist() == ["1", "12000"] and t9.iloc[:, 1].tolist() == ["0.012", "3.5"]
    ds = pd.DataFrame({"model": "m", "layer": "l", "method": ["a"], "mean_auc": [0.61234], "sem": [0.05], "n_classes_used": 9})
    assert tables.downstream_table(ds).iloc[0].tolist() == ["a", "0.612 ± 0.050"]


def test_markdown_round_trip_and_paper_table():
    long = pd.DataFrame({"model": "m", "layer": "l", "method": "a|b", "n_neurons": 8, "device": "cpu",
                         "seconds": [0.5], "seconds_total": [1.5]})
    df, md = tables.paper_table("table8", long)
    lines = md.splitlines()
    assert lines[0].startswith("## Table 8") and lines[3] == "|---|---|"
    assert lines[4] == "| a\\|b | 1.5 |"
    with pytest.raises(ValueError, match="unknown paper table"):
        tables.paper_table("table42", long)


# --- end to end on config/tiny.yaml ----------------------------------------------------------------

FIGURE_NAMES = sorted(figures.FIGURES)
PAPER_TABLES = ["table1", "table2", "table4", "table5", "table8", "table9"]
PROMISED = {  # columns each table's caption promises (beyond the per model/layer ones)
    "table1": {"method", "paper RN50 layer4", "paper ViT-B/16 layer11"},
    "table2": {"method", "paper RN50 layer4", "paper ViT-B/16 layer11"},
    "table4": {"guide", "sampler", "n", *tables.AUC_BINS},
    "table5": {"method"},
    "table8": {"method"},
    "table9": {"method"},
}
CELL = {"table1": r"-?\d\.\d{3}( ± \d\.\d{3})?|n/a", "table2": r"-?\d\.\d{3}( ± \d\.\d{3})?|n/a",
        "table5": r"\d\.\d{3}( ± \d\.\d{3})?|n/a", "table8": r"[\d.]+|n/a", "table9": r"[\d.]+|n/a"}


@pytest.mark.slow
def test_pipeline_writes_every_figure_and_paper_table(tiny_run):
    fig_dir = tiny_run / "results" / "tiny" / "figures"
    for name in FIGURE_NAMES:
        png, pdf = fig_dir / f"{name}.png", fig_dir / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
        assert pdf.read_bytes()[:4] == b"%PDF", name
    paper = tiny_run / "results" / "tiny" / "tables" / "paper"
    for name in PAPER_TABLES:
        t = pd.read_csv(paper / f"{name}.csv", dtype=str, keep_default_na=False)
        assert PROMISED[name] <= set(t.columns), (name, list(t.columns))
        assert len(t) > 0
        if name in CELL:
            data = [c for c in t.columns if re.match(r"\w+/\w+ ", c)]
            assert data, (name, list(t.columns))
            assert all(re.fullmatch(CELL[name], v) for c in data for v in t[c]), (name, t[data])
        md = (paper / f"{name}.md").read_text()
        assert md.startswith("## Table") and md.count("\n|") >= len(t) + 1


@pytest.mark.slow
def test_report_has_every_table_and_figure_and_one_setting_reruns_one_figure(tiny_run):
    out = run_snakemake(tiny_run, "--report", "report.html")
    html = (tiny_run / "report.html").read_text()
    assert out.returncode == 0 and len(html) > 100_000
    for name in FIGURE_NAMES:
        assert f"{name}.png" in html, name
    for name in PAPER_TABLES:
        assert f"{name}.csv" in html, name
    assert "Study <tt" in html and "tiny</tt>" in html  # the caption names the study it is about
    # a plotting setting of one figure reruns that figure's job and nothing else
    dry = run_snakemake(tiny_run, "-n", "--config", 'report={"figures": {"fig07_gamma": {"width": 6.5}}}').stdout
    stats = dry.split("Job stats:")[1].split("\n\n")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", stats, re.M))
    jobs.pop("total"), jobs.pop("all", None)  # rule all is listed whenever anything reruns
    assert jobs == {"figure_fig07_gamma": "1"}, stats


@pytest.mark.parametrize("name", FIGURE_NAMES)
def test_an_empty_table_draws_a_panel_that_says_so(name):
    columns = {"setting1_rce": ["concept_model", "sampler", "n", "rce", "sem", "n_pairs"],
               "gamma_sweep": ["concept_model", "gamma", "n", "rce", "sem", "n_pairs"],
               "setting2_cost": ["concept_model", "aggregation", "n_raters", "n", "rce", "sem", "n_pairs", "mean_cost"],
               "setting2_beta": ["concept_model", "error_model", "beta", "n_raters", "n", "rce", "sem", "n_pairs"],
               "setting2_error_model": ["concept_model", "prior", "error_model", "n_raters", "n", "rce", "sem", "n_pairs"],
               "setting2_prior": ["concept_model", "role", "aggregation", "n_raters", "n", "rce", "sem", "n_pairs"],
               "table4_auc_bins": ["concept_model", "auc_bin", "sampler", "n", "rce", "sem", "n_pairs"],
               "table1_automated": ["model", "layer", "method", "concept_model", "mean", "sem", "n_common"],
               "table2_complex": ["model", "layer", "method", "concept_model", "mean", "sem", "n_common"]}
    needs = figures.FIGURES[name][1]
    fig = figures.draw(name, {t: pd.DataFrame(columns=columns[t]) for t in needs})
    assert "no " in _texts(fig)
    plt.close(fig)
