"""CoSy-style evaluation of every method's explanations (SPEC sec. 6, LINE's metric; Kopf et al. 2024).

CoSy asks whether the neuron fires on images OF the explanation more than on the dataset: it generates
images of the explanation, and compares the neuron's activations on them with its activations on the
dataset by AUC, MAD and the Mann-Whitney U test. Offline, the "images of the explanation" are retrieved:
the ``n_images`` images of the scoring split (``explain.scoring.split``, test: no method saw them)
with the highest predicted activation s(x, E) under a concept model's presence (SPEC sec. 2: the
concept's calibrated probability for a simple explanation; the weighted sum, probabilistic formula or
clusters otherwise; ``explanations.predicted_matrix``). The control is the rest of the split.

Per (neuron, explanation), with T the retrieved images, n = |T|, m = N - n, ranks of the neuron's
activations over the whole split (average ranks for ties; T and its complement are the whole split,
so these are the Mann-Whitney ranks):

* ``auc`` = U / (n m), U = sum of the ranks of T - n (n + 1) / 2;
* ``mad`` = (mean over T - mean over the rest) / std of the rest (ddof 1; 1 if constant);
* ``p_value``: one-sided (T higher) Mann-Whitney U, normal approximation with tie correction and
  continuity correction (scipy's ``method="asymptotic"``), vectorised over all explanations.

An explanation naming a concept the concept model's presence file lacks gets NaN and a reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from neuronaudit.explanations import Explanation, predicted_matrix

__all__ = ["NEURON_COLUMNS", "SUMMARY_COLUMNS", "cosy_scores", "cosy_summary"]

NEURON_COLUMNS = ["model", "layer", "method", "neuron", "explanation", "auc", "mad", "p_value", "n_images", "reason"]
SUMMARY_COLUMNS = ["model", "layer", "method", "n_explanations", "n_scored", "mean_auc", "sem_auc", "mean_mad",
                   "sem_mad", "share_significant", "alpha", "n_images"]


def cosy_scores(activations: np.ndarray, presence: np.ndarray, concepts: Sequence[str], table: pd.DataFrame,
                n_images: int = 50, model: str = "", layer: str = "") -> pd.DataFrame:
    """CoSy AUC / MAD / p-value of every row of an explanation ``table`` (neuron = column of
    ``activations``, the scoring split's N x K_layer); ``presence`` (N x T) over ``concepts``."""
    acts = np.asarray(activations, dtype=np.float64)
    n_all = acts.shape[0]
    n = int(min(n_images, n_all - 1))
    index = {c: i for i, c in enumerate(concepts)}
    exps = [Explanation.from_dict(s) for s in table["structured"]]
    ok = np.array([all(c in index for c in e.concepts()) for e in exps], dtype=bool)
    reason = np.array(["" if k else f"concept unknown to the concept model: {[c for c in e.concepts() if c not in index]}"
                       for e, k in zip(exps, ok, strict=True)], dtype=object)
    neurons = table["neuron"].to_numpy(dtype=np.int64)
    auc = np.full(len(exps), np.nan)
    mad = np.full(len(exps), np.nan)
    pval = np.full(len(exps), np.nan)
    idx = np.flatnonzero(ok)
    if len(idx) and n >= 1:
        s = predicted_matrix([exps[i] for i in idx], index, presence)  # (N, E')
        top = np.argpartition(-s, n - 1, axis=0)[:n]  # (n, E')
        cols = neurons[idx]
        a = acts[:, cols]  # (N, E')
        ranks = rankdata(a, axis=0)  # average ranks
        in_t = np.zeros_like(a, dtype=bool)
        in_t[top, np.arange(len(idx))] = True
        m = n_all - n
        u = ranks[top, np.arange(len(idx))].sum(axis=0) - n * (n + 1) / 2
        auc[idx] = u / (n * m)
        x_mean = np.where(in_t, a, 0).sum(0) / n
        rest = np.where(in_t, np.nan, a)
        y_mean = np.nanmean(rest, axis=0)
        y_std = np.nanstd(rest, axis=0, ddof=1)
        mad[idx] = (x_mean - y_mean) / np.where(y_std > 0, y_std, 1.0)
        tie_term = np.array([_tie_sum(a[:, j]) for j in range(a.shape[1])])
        sigma = np.sqrt(n * m / 12.0 * ((n_all + 1) - tie_term / (n_all * (n_all - 1))))
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (u - n * m / 2.0 - 0.5) / sigma
        pval[idx] = np.where(sigma > 0, norm.sf(z), np.nan)
        const = sigma == 0
        reason[idx[const]] = "constant neuron on the scoring split"
        auc[idx[const]] = np.nan
    return pd.DataFrame({"model": model, "layer": layer, "method": table["method"].to_numpy(), "neuron": neurons,
                         "explanation": table["explanation"].to_numpy(), "auc": auc, "mad": mad, "p_value": pval,
                         "n_images": n, "reason": reason}, columns=NEURON_COLUMNS)


def _tie_sum(x: np.ndarray) -> float:
    _, counts = np.unique(x, return_counts=True)
    return float((counts.astype(np.float64) ** 3 - counts).sum())


def _sem(v: pd.Series) -> float:
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else np.nan


def cosy_summary(per_neuron: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (model, layer, method): mean ± SEM of AUC and MAD over the scored explanations, and the share
    with p < ``alpha``."""
    rows = []
    for (model, layer, method), g in per_neuron.groupby(["model", "layer", "method"], sort=True):
        sc = g[np.isfinite(g["auc"])]
        k = len(sc)
        rows.append({"model": model, "layer": layer, "method": method, "n_explanations": len(g), "n_scored": k,
                     "mean_auc": float(sc["auc"].mean()) if k else np.nan, "sem_auc": _sem(sc["auc"]),
                     "mean_mad": float(sc["mad"].mean()) if k else np.nan, "sem_mad": _sem(sc["mad"]),
                     "share_significant": float((sc["p_value"] < alpha).mean()) if k else np.nan, "alpha": alpha,
                     "n_images": int(g["n_images"].iloc[0]) if len(g) else 0})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def cosy_figure(summary: pd.DataFrame, methods_order: Mapping[str, int] | None = None):
    """Mean CoSy AUC ± SEM per method, one panel per (model, layer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(zip(summary["model"], summary["layer"], strict=True)))
    fig, axes = plt.subplots(1, max(1, len(layers)), figsize=(3.2 * max(1, len(layers)), 3.6), squeeze=False,
                             sharey=True)
    for ax, (model, layer) in zip(axes[0], layers, strict=False):
        g = summary[(summary["model"] == model) & (summary["layer"] == layer)]
        if methods_order:
            g = g.sort_values("method", key=lambda s: s.map(lambda m: methods_order.get(m, 999)))
        colors = ["#d62728" if m.startswith("line") else "#7f7f7f" for m in g["method"]]
        ax.barh(range(len(g)), g["mean_auc"], xerr=g["sem_auc"].fillna(0), color=colors)
        ax.set_yticks(range(len(g)), list(g["method"]), fontsize=8)
        ax.axvline(0.5, color="k", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_title(f"{model}/{layer}", fontsize=9)
        ax.set_xlabel("CoSy AUC (mean ± SEM)", fontsize=8)
    fig.suptitle("CoSy-style evaluation: activations on images of the explanation vs the rest", fontsize=9)
    fig.tight_layout()
    return fig
