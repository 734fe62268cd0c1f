"""Figures of the paper (SPEC sec. 5), drawn from the long summary tables (results/{study}/tables/*.csv).

Each function takes the table(s) as DataFrames and a ``settings`` dict (the figure's
``report.figures.<name>`` config block: size, log axes, which raters / sample size to show) and
returns a matplotlib Figure; nothing here reads files, so a notebook can call them on any table of the
same columns (docs/report.md). Every panel says how many (neuron, concept) pairs or neurons are behind
its points, and a guide, prior or bin with no rows is said on the panel rather than left empty.

=====================================  ===============================  ==================================
figure (:data:`FIGURES` key)           long table(s)                    paper
=====================================  ===============================  ==================================
``fig06_cost_vs_error``                setting2_cost                    Fig. 6, error against cost
``fig07_gamma``                        gamma_sweep                      Fig. 7, MG-IS mixing weight γ
``fig08_beta``                         setting2_beta                    Fig. 8, BRAgg uniform prior β
``fig09_rce_vs_n``                     setting1_rce                     Fig. 9, samplers' RCE against n
``fig10_error_models``                 setting2_error_model             Fig. 10, uniform vs per-input η
``fig11_model_hybrid_human``           setting2_prior                   Fig. 11, model-only/hybrid/human
``fig12_guiding_model``                setting1_rce                     Fig. 12, MG-IS per guide
``fig13_prior``                        setting2_prior                   Fig. 13, hybrid per prior model
``table4_auc_bins``                    table4_auc_bins                  Table 4 as bars
``table1_automated`` / ``table2_..``   table1_automated / table2_..     Tables 1-2 as dot plots
=====================================  ===============================  ==================================
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from neuronaudit.report.curves import equal_error_ratio  # noqa: E402 (re-exported: Fig. 9 writes it)
from neuronaudit.report.paper import PAPER_TABLE4  # noqa: E402

SAMPLER_STYLE = {
    "uniform": ("#7f7f7f", "Uniform"),
    "mg_is": ("#d62728", "MG-IS (model-guided)"),
    "ag_is": ("#1f77b4", "AG-IS (activation-guided)"),
}
AGGREGATION_STYLE = {
    "majority": ("#7f7f7f", "Majority vote"),
    "bragg_uniform": ("#1f77b4", "BRAgg, uniform prior"),
    "bragg_model": ("#d62728", "BRAgg, model prior"),
}
ROLE_STYLE = {
    "model-only": ("#2ca02c", ":", "model only (concept model, $0)"),
    "human": ("#1f77b4", "-", "human only (BRAgg, uniform prior β)"),
    "hybrid": ("#d62728", "-", "hybrid (BRAgg, model prior)"),
    "majority": ("#7f7f7f", "--", "majority vote"),
}
COST_PER_RATING = 0.004  # dollars per (input, rater): $0.05 per 15-image task plus $0.01 fee (SPEC sec. 5)
RCE_LABEL = "relative correlation error (RCE)"
N_LABEL = "inputs sampled per (neuron, concept), n"

DEFAULTS = {"width": 4.6, "height": 3.6, "log_x": True, "log_y": True, "title": None, "dpi": None}


def _settings(settings: dict | None, **defaults) -> dict:
    out = {**DEFAULTS, **defaults}
    out.update({k: v for k, v in (settings or {}).items() if v is not None})
    return out


def _style(ax, xlabel: str, ylabel: str, title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":  # plain numbers at 1-2-5 steps instead of 2x10^-1 style labels
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)


def _scales(ax, s: dict) -> None:
    ax.set_xscale("log" if s["log_x"] else "linear")
    ax.set_yscale("log" if s["log_y"] else "linear")


def _panels(n: int, width: float = 4.6, height: float = 3.6, sharey: bool = True):
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), squeeze=False, sharey=sharey)
    return fig, axes[0]


def _missing(ax, text: str) -> None:
    """Say on the panel that there is nothing to draw (a missing guide, prior, bin or setting)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9,
            color="#a00", wrap=True, bbox={"boxstyle": "round", "fc": "#fff4f4", "ec": "#a00"})


def _count(values, unit: str = "pairs") -> str:
    """'80 pairs', or '73-80 pairs' when the points of a line rest on different numbers."""
    v = pd.Series(values).dropna().astype(int)
    if v.empty:
        return f"0 {unit}"
    lo, hi = int(v.min()), int(v.max())
    return f"{lo} {unit}" if lo == hi else f"{lo}-{hi} {unit}"


def _line(ax, sub: pd.DataFrame, x: str, color, label: str, ls: str = "-", lw: float = 1.5, marker: str = "o",
          band: bool = True) -> None:
    sub = sub.sort_values(x)
    ax.plot(sub[x], sub["rce"], ls=ls, marker=marker, color=color, lw=lw, ms=3.5, label=label)
    if band and "sem" in sub:
        sem = sub["sem"].fillna(0)
        ax.fill_between(sub[x], sub["rce"] - sem, sub["rce"] + sem, color=color, alpha=0.13, lw=0)


def _n_ticks(ax) -> None:
    """Ticks at the sample sizes drawn (25, 50, 100, 180, ...) on an n axis, not at 1-2-5 steps."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ns = sorted({float(x) for line in ax.get_lines() for x in np.asarray(line.get_xdata(), float) if np.isfinite(x) and x > 0})
    kept = []
    for n in ns:  # labels that would overlap on a log axis (180 and 200): keep the first
        if not kept or n >= 1.2 * kept[-1]:
            kept.append(n)
    if kept and len(kept) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(kept))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.tick_params(axis="x", labelsize=8)


def _finish(fig, axes, title: str, legend_fontsize: float = 8, outside: bool = False, loc: str = "best") -> plt.Figure:
    for ax in axes:
        if ax.get_xlabel() == N_LABEL:
            _n_ticks(ax)
        if ax.get_legend_handles_labels()[0]:
            if outside and ax is axes[-1]:
                ax.legend(frameon=False, fontsize=legend_fontsize, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            elif not outside:
                ax.legend(frameon=False, fontsize=legend_fontsize, loc=loc)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def _panel_keys(table: pd.DataFrame, column: str, wanted) -> list:
    """The panels to draw: the configured list (kept even when absent, to say so) or every value."""
    have = sorted(table[column].dropna().unique()) if column in table else []
    return list(wanted) if wanted else (have or ["(none)"])  # an empty table: one panel saying so


def _raters_list(value) -> list[int] | None:
    if value is None:
        return None
    return [int(v) for v in value] if isinstance(value, list | tuple) else [int(value)]


def _raters_one(table: pd.DataFrame, value) -> int | None:
    """The number of raters a one-design figure shows: the configured one (first of a list), else 3
    (the paper's design), or the nearest the table has."""
    want = (_raters_list(value) or [3])[0]
    have = table["n_raters"][table["n_raters"] > 0]
    return want if want in set(have) else _nearest(have, want)


def _nearest(values, target) -> int | None:
    values = sorted(set(int(v) for v in values))
    if not values:
        return None
    return min(values, key=lambda v: (abs(v - target), v))


# --- Setting 1 -------------------------------------------------------------------------------------

def fig09_rce_vs_n(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 9: RCE against n, one line per sampler with its SEM band, one panel per guide; the
    equal-error input ratio of MG-IS over uniform written on each panel (paper: ~13x)."""
    s = _settings(settings, samplers=None, guides=None)
    guides = _panel_keys(table, "concept_model", s["guides"])
    fig, axes = _panels(len(guides), s["width"], s["height"])
    for ax, guide in zip(axes, guides, strict=True):
        sub = table[table["concept_model"] == guide]
        _scales(ax, s)
        _style(ax, N_LABEL, RCE_LABEL, f"guide: {guide}")
        if sub.empty:
            _missing(ax, f"no Setting-1 rows for guide {guide!r}")
            continue
        for sampler, (color, label) in SAMPLER_STYLE.items():
            if s["samplers"] and sampler not in s["samplers"]:
                continue
            ss = sub[sub["sampler"] == sampler]
            if not ss.empty:
                _line(ax, ss, "n", color, f"{label} ({_count(ss['n_pairs'])})" if "n_pairs" in ss else label)
        ratio = equal_error_ratio(sub[sub["sampler"] == "uniform"], sub[sub["sampler"] == "mg_is"])
        if ratio is not None:
            text = f"MG-IS: {'>= ' if ratio[1] else ''}{ratio[0]:.1f}x fewer inputs\nfor uniform's error at n = {int(sub['n'].max())}\n(paper ~13x)"
            ax.text(0.98, 0.97, text, transform=ax.transAxes, fontsize=8, va="top", ha="right")
    return _finish(fig, axes, s["title"] or "Fig. 9 - Setting 1: RCE of the estimated score against sample size (no label noise)",
                   loc="lower left")


def fig07_gamma(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 7: MG-IS's RCE against n for each mixing weight γ (q = (1-γ) q_model + γ p), per guide."""
    s = _settings(settings, guides=None)
    guides = _panel_keys(table, "concept_model", s["guides"])
    fig, axes = _panels(len(guides), s["width"], s["height"])
    gammas = sorted(table["gamma"].dropna().unique())
    cmap = plt.get_cmap("viridis")
    for ax, guide in zip(axes, guides, strict=True):
        sub = table[table["concept_model"] == guide]
        _scales(ax, s)
        _style(ax, N_LABEL, RCE_LABEL, f"guide: {guide}")
        if sub.empty:
            _missing(ax, f"no gamma-sweep rows for guide {guide!r}\n(sampling.sweep_guides)")
            continue
        for k, gamma in enumerate(gammas):
            g = sub[sub["gamma"] == gamma]
            if g.empty:
                continue
            paper = abs(gamma - 0.2) < 1e-9
            _line(ax, g, "n", cmap(k / max(len(gammas) - 1, 1)), f"γ = {gamma:g}{' (paper)' if paper else ''} ({_count(g['n_pairs'])})",
                  lw=2.5 if paper else 1.2)
    return _finish(fig, axes, s["title"] or "Fig. 7 - MG-IS's error for the mixing weight γ with uniform sampling")


def fig12_guiding_model(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 12: MG-IS guided by each concept model against n, uniform as the reference (one panel)."""
    s = _settings(settings, guides=None, width=6.0, height=4.2)
    guides = _panel_keys(table, "concept_model", s["guides"])
    fig, axes = _panels(1, s["width"], s["height"])
    ax = axes[0]
    _scales(ax, s)
    _style(ax, N_LABEL, RCE_LABEL, "MG-IS by guiding concept model")
    cmap = plt.get_cmap("tab10")
    absent = []
    for k, guide in enumerate(guides):
        g = table[(table["concept_model"] == guide) & (table["sampler"] == "mg_is")]
        if g.empty:
            absent.append(guide)
            continue
        _line(ax, g, "n", cmap(k), f"MG-IS guided by {guide} ({_count(g['n_pairs'])})")
    uni = table[table["sampler"] == "uniform"]
    if not uni.empty:  # uniform does not use the guide: its rows are the same under every guide
        first = uni[uni["concept_model"] == uni["concept_model"].iloc[0]]
        _line(ax, first, "n", "#7f7f7f", f"Uniform ({_count(first['n_pairs'])})", ls="--", band=False)
    if absent:
        _missing(ax, "no MG-IS rows for guide(s) " + ", ".join(map(str, absent)))
    return _finish(fig, axes, s["title"] or "Fig. 12 - Setting 1: the guiding concept model")


def table4_auc_bins(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Table 4 as grouped bars: RCE of uniform and MG-IS per bin of the guide's AUC at n = table_n,
    pairs per bin under each group; an empty bin is labelled "no pairs"; the paper's MG-IS/uniform
    ratio per bin is printed under the axis."""
    s = _settings(settings, guides=None, log_y=False, log_x=False)
    guides = _panel_keys(table, "concept_model", s["guides"])
    fig, axes = _panels(len(guides), s["width"] + 0.6, s["height"] + 0.4)
    for ax, guide in zip(axes, guides, strict=True):
        sub = table[table["concept_model"] == guide]
        bins = list(dict.fromkeys(sub["auc_bin"])) or list(PAPER_TABLE4)
        x = np.arange(len(bins))
        for k, sampler in enumerate(("uniform", "mg_is")):
            ss = sub[sub["sampler"] == sampler].set_index("auc_bin").reindex(bins)
            color, label = SAMPLER_STYLE[sampler]
            ax.bar(x + (k - 0.5) * 0.38, ss["rce"].fillna(0), 0.38, yerr=ss["sem"].fillna(0), color=color,
                   label=label, capsize=2)
        counts = sub.drop_duplicates("auc_bin").set_index("auc_bin")["n_pairs"].reindex(bins).fillna(0).astype(int)
        for xi, c in zip(x, counts, strict=True):
            if c == 0:
                ax.text(xi, 0.01, "no pairs", ha="center", va="bottom", rotation=90, fontsize=8, color="#a00",
                        transform=ax.get_xaxis_transform())
        ax.set_xticks(x, [f"{b}\n({c} pairs)" for b, c in zip(bins, counts, strict=True)], fontsize=8)
        n = int(sub["n"].iloc[0]) if len(sub) else 0
        if sub.empty:
            _missing(ax, f"no Table-4 rows for guide {guide!r}")
        if s["log_y"]:
            ax.set_yscale("log")
        _style(ax, "guide's AUC for the concept", f"RCE at n = {n}", f"guide: {guide}")
    paper = ", ".join(f"{b}: {u / m:.1f}x" for b, u, m in zip(["0-0.6", "0.6-0.8", "0.8-0.95", "0.95-0.99", "0.99-1"],
                                                             PAPER_TABLE4["Uniform"], PAPER_TABLE4["MG-IS"], strict=True))
    fig.text(0.5, -0.02, f"paper, uniform/MG-IS RCE ratio at n = 180: {paper}", ha="center", fontsize=8)
    return _finish(fig, axes, s["title"] or "Table 4 - RCE by the guiding concept model's AUC for the concept")


# --- Setting 2 -------------------------------------------------------------------------------------

def fig06_cost_vs_error(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 6: RCE against dollars per (neuron, explanation) = distinct inputs x raters x $0.004, a line
    per (aggregation, raters), one panel per prior concept model; the concept model alone as a
    dotted level (cost 0) and the paper's design (3 raters x 180 inputs, ~$2.2) as a vertical line."""
    s = _settings(settings, n_raters=None, aggregations=None, guides=None, width=5.2)
    priors = _panel_keys(table, "concept_model", s["guides"])
    fig, axes = _panels(len(priors), s["width"], s["height"])
    wanted = _raters_list(s["n_raters"])
    raters = sorted(r for r in table["n_raters"].unique() if r > 0 and (not wanted or r in wanted))
    widths = {r: 0.8 + 0.5 * i for i, r in enumerate(raters)}
    for ax, prior in zip(axes, priors, strict=True):
        sub = table[table["concept_model"] == prior]
        _scales(ax, s)
        _style(ax, r"cost per (neuron, explanation) [\$]", RCE_LABEL,
               f"prior / guide: {prior} ({_count(sub['n_pairs']) if len(sub) else 'no pairs'})")
        if sub.empty:
            _missing(ax, f"no Setting-2 rows for prior {prior!r}")
            continue
        for agg, (color, label) in AGGREGATION_STYLE.items():
            if s["aggregations"] and agg not in s["aggregations"]:
                continue
            for r in raters:
                ss = sub[(sub["aggregation"] == agg) & (sub["n_raters"] == r)]
                if not ss.empty:
                    _line(ax, ss, "mean_cost", color, f"{label}, {r} rater{'s' if r > 1 else ''}", lw=widths[r],
                          band=False, marker=".")
        model_only = sub[sub["aggregation"] == "model_only"]
        if not model_only.empty:
            ax.axhline(model_only["rce"].mean(), color="black", ls=":", lw=1,
                       label=r"concept model only (\$0; mean over n)")
        ax.axvline(3 * 180 * COST_PER_RATING, color="#555", ls="--", lw=0.8, label=r"paper's design: 3 raters x 180 inputs (\$2.16)")
    return _finish(fig, axes, s["title"] or r"Fig. 6 - Setting 2: error against cost (inputs x raters x \$0.004), simulated raters on MG-IS samples",
                   legend_fontsize=7, outside=True)


def fig08_beta(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 8: RCE of BRAgg with the uniform prior against β at one n, a line per number of raters
    (solid: uniform error model; dashed: per-input), one panel per prior concept model."""
    s = _settings(settings, n=None, error_models=None, guides=None, log_y=False)
    priors = _panel_keys(table, "concept_model", s["guides"])
    n = s["n"] if s["n"] else _nearest(table["n"], 180)
    fig, axes = _panels(len(priors), s["width"], s["height"])
    raters = sorted(table["n_raters"].unique())
    cmap = plt.get_cmap("plasma")
    styles = {"uniform": "-", "per_input": "--"}
    for ax, prior in zip(axes, priors, strict=True):
        sub = table[(table["concept_model"] == prior) & (table["n"] == n)]
        _scales(ax, s)
        _style(ax, "BRAgg uniform prior β", f"RCE at n = {n}", f"guide: {prior} ({_count(sub['n_pairs']) if len(sub) else 'no pairs'})")
        if sub.empty:
            _missing(ax, f"no β-sweep rows for prior {prior!r} at n = {n}")
            continue
        ax.axvspan(0.02, 0.2, color="#2ca02c", alpha=0.06, label="paper: β in 0.02-0.2 all fine")
        for em, ls in styles.items():
            if s["error_models"] and em not in s["error_models"]:
                continue
            for k, r in enumerate(raters):
                ss = sub[(sub["error_model"] == em) & (sub["n_raters"] == r)]
                if not ss.empty:
                    _line(ax, ss, "beta", cmap(k / max(len(raters), 1)), f"{r} rater{'s' if r > 1 else ''}, {em.replace('_', '-')} η",
                          ls=ls, band=False)
    return _finish(fig, axes, s["title"] or "Fig. 8 - BRAgg's uniform prior β", legend_fontsize=7, outside=True)


def fig10_error_models(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 10: uniform vs per-input error model (x the prior kind) against n at ``n_raters`` raters."""
    s = _settings(settings, n_raters=None, guides=None)
    priors = _panel_keys(table, "concept_model", s["guides"])
    r = _raters_one(table, s["n_raters"])
    fig, axes = _panels(len(priors), s["width"], s["height"])
    colors = {"uniform": "#1f77b4", "model": "#d62728"}
    styles = {"uniform": "-", "per_input": "--"}
    for ax, prior in zip(axes, priors, strict=True):
        sub = table[(table["concept_model"] == prior) & (table["n_raters"] == r)]
        _scales(ax, s)
        _style(ax, N_LABEL, RCE_LABEL, f"prior / guide: {prior}, {r} raters")
        if sub.empty:
            _missing(ax, f"no error-model rows for prior {prior!r} with {r} raters")
            continue
        for kind, color in colors.items():
            for em, ls in styles.items():
                ss = sub[(sub["prior"] == kind) & (sub["error_model"] == em)]
                if not ss.empty:
                    name = "uniform β prior" if kind == "uniform" else "model prior"
                    _line(ax, ss, "n", color, f"{name}, {em.replace('_', '-')} η ({_count(ss['n_pairs'])})", ls=ls,
                          band=em == "uniform")
    return _finish(fig, axes, s["title"] or "Fig. 10 - BRAgg's rater error models: one η for all inputs vs per-input η ~ Beta(0.75, 2.5)",
                   legend_fontsize=7)


def fig11_model_hybrid_human(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 11: model only vs hybrid vs human only (and majority vote) against n at ``n_raters``."""
    s = _settings(settings, n_raters=None, guides=None)
    priors = _panel_keys(table, "concept_model", s["guides"])
    r = _raters_one(table, s["n_raters"])
    fig, axes = _panels(len(priors), s["width"], s["height"])
    for ax, prior in zip(axes, priors, strict=True):
        sub = table[table["concept_model"] == prior]
        _scales(ax, s)
        _style(ax, N_LABEL, RCE_LABEL, f"concept model: {prior}, {r} raters")
        if sub.empty:
            _missing(ax, f"no rows for concept model {prior!r}")
            continue
        for role, (color, ls, label) in ROLE_STYLE.items():
            ss = sub[(sub["role"] == role) & (sub["n_raters"] == (0 if role == "model-only" else r))]
            if not ss.empty:
                _line(ax, ss, "n", color, f"{label} ({_count(ss['n_pairs'])})", ls=ls)
    return _finish(fig, axes, s["title"] or "Fig. 11 - Setting 2: concept model only, hybrid and human only", legend_fontsize=7)


def fig13_prior(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Fig. 13: the hybrid (BRAgg, model prior) for each prior concept model against n at
    ``n_raters``, with each model alone dotted and human only (BRAgg, uniform prior) as reference."""
    s = _settings(settings, n_raters=None, guides=None, width=6.0, height=4.2)
    priors = _panel_keys(table, "concept_model", s["guides"])
    r = _raters_one(table, s["n_raters"])
    fig, axes = _panels(1, s["width"], s["height"])
    ax = axes[0]
    _scales(ax, s)
    _style(ax, N_LABEL, RCE_LABEL, f"prior concept models, {r} raters")
    cmap = plt.get_cmap("tab10")
    absent = []
    for k, prior in enumerate(priors):
        sub = table[table["concept_model"] == prior]
        hybrid = sub[(sub["role"] == "hybrid") & (sub["n_raters"] == r)]
        if hybrid.empty:
            absent.append(prior)
            continue
        _line(ax, hybrid, "n", cmap(k), f"hybrid, prior {prior} ({_count(hybrid['n_pairs'])})")
        alone = sub[sub["role"] == "model-only"]
        if not alone.empty:
            _line(ax, alone, "n", cmap(k), f"{prior} alone", ls=":", band=False, marker="")
    human = table[(table["role"] == "human") & (table["n_raters"] == r)]
    if not human.empty:
        first = human[human["concept_model"] == human["concept_model"].iloc[0]]
        _line(ax, first, "n", "black", f"human only (MG-IS guided by {first['concept_model'].iloc[0]})", ls="--", band=False)
    if absent:
        _missing(ax, "no hybrid rows for prior(s) " + ", ".join(map(str, absent)))
    return _finish(fig, axes, s["title"] or "Fig. 13 - Setting 2: the prior's concept model", legend_fontsize=7, outside=True)


# --- Tables 1-2 ------------------------------------------------------------------------------------

def automated_scores(table: pd.DataFrame, settings: dict | None = None) -> plt.Figure:
    """Tables 1-2 as dot plots: mean ± SEM correlation score per method, one panel per (model, layer),
    one colour per scoring concept model; neurons compared in each panel's title."""
    s = _settings(settings, width=4.2, log_x=False, log_y=False)
    layers = list(dict.fromkeys(zip(table["model"], table["layer"], strict=True))) or [("(none)", "(none)")]
    fig, axes = _panels(len(layers), s["width"], 0.45 * table["method"].nunique() + 1.6)
    scorers = sorted(table["concept_model"].unique())
    offsets = np.linspace(-0.25, 0.25, len(scorers)) if len(scorers) > 1 else [0.0]
    methods = sorted(table["method"].unique())
    colors = plt.get_cmap("tab10")
    for ax, (model, layer) in zip(axes, layers, strict=True):
        sub = table[(table["model"] == model) & (table["layer"] == layer)]
        for k, scorer in enumerate(scorers):
            ss = sub[sub["concept_model"] == scorer].set_index("method").reindex(methods)
            y = np.arange(len(methods)) + offsets[k]
            ax.errorbar(ss["mean"], y, xerr=ss["sem"], fmt="o", color=colors(k), ms=4, label=f"scored by {scorer}")
        if sub.empty:
            _missing(ax, "no scored explanations")
        ax.set_yticks(np.arange(len(methods)), methods)
        ax.axvline(0, color="black", lw=0.6)
        n = f" ({int(sub['n_common'].max())} neurons)" if "n_common" in sub and len(sub) else ""
        _style(ax, "mean correlation score (test split)", "", f"{model} / {layer}{n}")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(frameon=False, fontsize=8)
    if s["title"]:
        fig.suptitle(s["title"], fontsize=11)
    fig.tight_layout()
    return fig


# The figures the report rules draw: name -> (function, the long tables it reads, by input name).
FIGURES: dict[str, tuple[Callable[..., plt.Figure], tuple[str, ...]]] = {
    "fig06_cost_vs_error": (fig06_cost_vs_error, ("setting2_cost",)),
    "fig07_gamma": (fig07_gamma, ("gamma_sweep",)),
    "fig08_beta": (fig08_beta, ("setting2_beta",)),
    "fig09_rce_vs_n": (fig09_rce_vs_n, ("setting1_rce",)),
    "fig10_error_models": (fig10_error_models, ("setting2_error_model",)),
    "fig11_model_hybrid_human": (fig11_model_hybrid_human, ("setting2_prior",)),
    "fig12_guiding_model": (fig12_guiding_model, ("setting1_rce",)),
    "fig13_prior": (fig13_prior, ("setting2_prior",)),
    "table4_auc_bins": (table4_auc_bins, ("table4_auc_bins",)),
    "table1_automated": (automated_scores, ("table1_automated",)),
    "table2_complex": (automated_scores, ("table2_complex",)),
}


def draw(name: str, tables: dict[str, pd.DataFrame], settings: dict | None = None) -> plt.Figure:
    """Draw figure ``name`` of :data:`FIGURES` from its long tables (keyed by table name)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {sorted(FIGURES)}")
    func, needs = FIGURES[name]
    missing = [t for t in needs if t not in tables]
    if missing:
        raise ValueError(f"figure {name}: no table(s) {missing} given (needs {list(needs)})")
    return func(*(tables[t] for t in needs), settings)


__all__ = [
    "FIGURES", "draw", "equal_error_ratio", "automated_scores", "table4_auc_bins", "fig06_cost_vs_error",
    "fig07_gamma", "fig08_beta", "fig09_rce_vs_n", "fig10_error_models", "fig11_model_hybrid_human",
    "fig12_guiding_model", "fig13_prior",
]
