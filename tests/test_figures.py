"""Figures are drawn from the summary tables: one panel per guide / prior / layer, one line or bar
series per sampler / aggregation, and the pipeline writes them as PNGs."""

import numpy as np
import pandas as pd

from neuronaudit.report import figures


def _setting1():
    rows = [(g, s, n, 1 / np.sqrt(n) * (1 if s == "uniform" else 0.5), 0.01)
            for g in ("probe", "conse") for s in ("uniform", "mg_is", "ag_is") for n in (25, 100, 400)]
    return pd.DataFrame(rows, columns=["concept_model", "sampler", "n", "rce", "sem"])


def test_rce_vs_samples_panels_and_lines():
    fig = figures.rce_vs_samples(_setting1())
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == ["guide: conse", "guide: probe"]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)
    ys = fig.axes[0].get_lines()[0].get_ydata()
    assert np.all(np.diff(ys) < 0)  # plotted in order of n


def test_auc_bins_and_cost_and_scores():
    t4 = pd.DataFrame({"concept_model": ["probe"] * 4, "auc_bin": ["0.95-0.99", "0.95-0.99", "0.99-1", "0.99-1"],
                       "sampler": ["uniform", "mg_is"] * 2, "n": 180, "rce": [0.4, 0.2, 0.3, 0.1],
                       "sem": 0.01, "n_pairs": [5, 5, 9, 9]})
    fig = figures.rce_by_guide_auc(t4)
    assert len(fig.axes[0].patches) == 4
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.95-0.99\n(5 pairs)", "0.99-1\n(9 pairs)"]
    cost = pd.DataFrame([("probe", a, r, n, 0.5 / np.sqrt(n * r), n * r * 0.004)
                         for a in ("majority", "bragg_uniform", "bragg_model") for r in (1, 3) for n in (25, 100)]
                        + [("probe", "model_only", 0, 25, 0.3, 0.0)],
                        columns=["concept_model", "aggregation", "n_raters", "n", "rce", "mean_cost"])
    fig = figures.error_vs_cost(cost)
    assert len(fig.axes[0].get_lines()) == 3 * 2 + 1  # aggregation x raters, plus the model-only line
    scores = pd.DataFrame({"model": "m", "layer": "l", "method": ["a", "b", "a", "b"], "concept_model": ["p", "p", "q", "q"],
                           "mean": [0.1, 0.2, 0.3, 0.4], "sem": 0.01})
    fig = figures.automated_scores(scores)
    assert len(fig.axes[0].containers) == 2


def test_pipeline_writes_the_figures(tiny_run):
    pngs = sorted((tiny_run / "results" / "tiny" / "figures").glob("*.png"))
    assert {p.stem for p in pngs} == {"setting1_rce", "table4_auc_bins", "setting2_cost", "table1_automated", "table2_complex"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)
