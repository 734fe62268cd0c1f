"""Figures of the method studies, drawn from the summary tables (results/{study}/tables/*.csv).

Each function takes the table as a DataFrame and returns a matplotlib Figure; nothing here reads
files, so a notebook can call them on any table of the same columns (docs/studies.md).

* :func:`rce_vs_samples` — Setting 1, RCE against inputs rated per sampler (seed 001 Figs. 9, 12);
* :func:`rce_by_guide_auc` — the Table 4 analogue as bars, uniform vs MG-IS per AUC bin;
* :func:`error_vs_cost` — Setting 2, RCE against dollars per (neuron, explanation) (Fig. 6);
* :func:`automated_scores` — Tables 1-2 as dot plots, mean ± SEM per method and scorer.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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


def _style(ax, xlabel: str, ylabel: str, title: str) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale == "log":  # plain numbers at 1-2-5 steps instead of 2x10^-1 style labels
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)


def _panels(n: int, width: float = 4.6, height: float = 3.6):
    fig, axes = plt.subplots(1, max(n, 1), figsize=(width * max(n, 1), height), squeeze=False, sharey=True)
    return fig, axes[0]


def rce_vs_samples(table: pd.DataFrame) -> plt.Figure:
    """One panel per guide concept model; a line per sampler with its SEM band (log-log)."""
    guides = sorted(table["concept_model"].unique())
    fig, axes = _panels(len(guides))
    for ax, guide in zip(axes, guides, strict=True):
        sub = table[table["concept_model"] == guide]
        for sampler, (color, label) in SAMPLER_STYLE.items():
            s = sub[sub["sampler"] == sampler].sort_values("n")
            if s.empty:
                continue
            ax.plot(s["n"], s["rce"], "o-", color=color, label=label, ms=4)
            ax.fill_between(s["n"], s["rce"] - s["sem"].fillna(0), s["rce"] + s["sem"].fillna(0), color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _style(ax, "inputs sampled per (neuron, concept)", "relative correlation error", f"guide: {guide}")
    axes[0].legend(frameon=False, fontsize=9)
    fig.suptitle("Setting 1: error of the estimated correlation score (no label noise)", fontsize=12)
    fig.tight_layout()
    return fig


def rce_by_guide_auc(table: pd.DataFrame) -> plt.Figure:
    """Grouped bars: RCE of uniform and MG-IS per bin of the guide's AUC (Table 4), pairs per bin."""
    guides = sorted(table["concept_model"].unique())
    fig, axes = _panels(len(guides))
    for ax, guide in zip(axes, guides, strict=True):
        sub = table[(table["concept_model"] == guide) & (table["n_pairs"] > 0)]
        bins = list(dict.fromkeys(sub["auc_bin"]))
        x = np.arange(len(bins))
        for k, sampler in enumerate(("uniform", "mg_is")):
            s = sub[sub["sampler"] == sampler].set_index("auc_bin").reindex(bins)
            color, label = SAMPLER_STYLE[sampler]
            ax.bar(x + (k - 0.5) * 0.38, s["rce"], 0.38, yerr=s["sem"], color=color, label=label, capsize=2)
        counts = sub.drop_duplicates("auc_bin").set_index("auc_bin")["n_pairs"].reindex(bins)
        ax.set_xticks(x, [f"{b}\n({int(c)} pairs)" for b, c in zip(bins, counts, strict=True)], fontsize=8)
        n = int(sub["n"].iloc[0]) if len(sub) else 0
        _style(ax, "guide's AUC for the concept", f"relative correlation error at n = {n}", f"guide: {guide}")
    axes[0].legend(frameon=False, fontsize=9)
    fig.suptitle("RCE by the guiding concept model's AUC for the concept (Table 4 analogue)", fontsize=12)
    fig.tight_layout()
    return fig


def error_vs_cost(table: pd.DataFrame) -> plt.Figure:
    """One panel per prior concept model: RCE against cost, a line per (aggregation, raters)."""
    priors = sorted(table["concept_model"].unique())
    fig, axes = _panels(len(priors), width=5.2)
    raters = sorted(r for r in table["n_raters"].unique() if r > 0)
    widths = {r: 0.8 + 0.5 * i for i, r in enumerate(raters)}
    for ax, prior in zip(axes, priors, strict=True):
        sub = table[table["concept_model"] == prior]
        for agg, (color, label) in AGGREGATION_STYLE.items():
            for r in raters:
                s = sub[(sub["aggregation"] == agg) & (sub["n_raters"] == r)].sort_values("mean_cost")
                if not s.empty:
                    ax.plot(s["mean_cost"], s["rce"], "-", color=color, lw=widths[r], alpha=0.35 + 0.6 * r / max(raters),
                            label=f"{label}, {r} rater{'s' if r > 1 else ''}")
        model_only = sub[sub["aggregation"] == "model_only"]
        if not model_only.empty:
            ax.axhline(model_only["rce"].mean(), color="black", ls=":", lw=1, label=r"concept model only (\$0; mean over n)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _style(ax, r"cost per (neuron, explanation), \$", "relative correlation error",
               f"prior / guide: {prior}")
    axes[-1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(r"Setting 2: error against cost (inputs x raters x \$0.004), simulated raters on MG-IS samples (Fig. 6)", fontsize=12)
    fig.tight_layout()
    return fig


def automated_scores(table: pd.DataFrame) -> plt.Figure:
    """Dot plot of mean ± SEM correlation score per method, one panel per (model, layer)."""
    layers = list(dict.fromkeys(zip(table["model"], table["layer"], strict=True)))
    fig, axes = _panels(len(layers), width=4.2, height=0.45 * table["method"].nunique() + 1.6)
    scorers = sorted(table["concept_model"].unique())
    offsets = np.linspace(-0.25, 0.25, len(scorers)) if len(scorers) > 1 else [0.0]
    methods = sorted(table["method"].unique())
    colors = plt.get_cmap("tab10")
    for ax, (model, layer) in zip(axes, layers, strict=True):
        sub = table[(table["model"] == model) & (table["layer"] == layer)]
        for k, scorer in enumerate(scorers):
            s = sub[sub["concept_model"] == scorer].set_index("method").reindex(methods)
            y = np.arange(len(methods)) + offsets[k]
            ax.errorbar(s["mean"], y, xerr=s["sem"], fmt="o", color=colors(k), ms=4, label=f"scored by {scorer}")
        ax.set_yticks(np.arange(len(methods)), methods)
        ax.axvline(0, color="black", lw=0.6)
        _style(ax, "mean correlation score (test split)", "", f"{model} / {layer}")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
