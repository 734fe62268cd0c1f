"""Tables and the figure of the crowdsourced comparison (issue 9, item 6; seed 001 Tables 3, 6, 7).

All functions take frames (``estimates.parquet`` and ``soft_presence.parquet`` of
:mod:`neuronaudit.crowd.aggregate`, the ratings store, ``items.parquet``) and return frames, text or a
matplotlib Figure; nothing here reads files.

* :func:`score_summary` / :func:`table3` / :func:`table3_markdown`: the paper's Tables 3 and 6 layout,
  rows methods, columns one per aggregation for each (model, layer), cells "mean ± SEM" of the
  estimated rho over the explanations (one per neuron) via :func:`neuronaudit.report.tables.mean_pm_sem`,
  plus n, the mean exact and automated scores, and a last row with the interval coverage (share of the
  explanations with a known exact rho whose interval contains it).
* :func:`ttest_table`: Table 7, two-sample Student's t-tests (:func:`neuronaudit.aggregation.two_sample_ttest`)
  between every ordered pair of methods per (model, layer, aggregation); one-sided, H1: mean(method_a) >
  mean(method_b) (``alternative`` = "greater"; the paper asks whether one method's explanations score
  higher than another's).
* :func:`agreement_table`: Fleiss' kappa (:func:`neuronaudit.aggregation.fleiss_kappa`) per study and per
  (model, layer), on the non-gold items rated by exactly the planned number of raters.
* :func:`rater_table`: per rater, ratings, accuracy on gold items, agreement with the BRAgg (model prior)
  consensus thresholded at 0.5 (the consensus includes the rater's own answer; items whose consensus is
  exactly 0.5 are skipped).
* :func:`estimates_figure`: per-explanation estimates with their intervals beside the exact (or, where
  unknown, automated) score, grouped by method, and the estimate against that score with the identity line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from neuronaudit.aggregation import fleiss_kappa, standard_error, two_sample_ttest  # noqa: E402
from neuronaudit.crowd.aggregate import (  # noqa: E402
    AGGREGATION_LABELS,
    DEFAULT_AGGREGATIONS,
    HEADLINE_AGGREGATION,
    dedupe_ratings,
    item_index,
)
from neuronaudit.report.tables import mean_pm_sem  # noqa: E402

__all__ = [
    "COVERAGE_ROW",
    "COVERAGE_TRUTH_ROW",
    "score_summary",
    "table3",
    "table3_markdown",
    "ttest_table",
    "agreement_table",
    "rater_table",
    "coverage_summary",
    "estimates_figure",
]

COVERAGE_ROW = "interval coverage"
COVERAGE_TRUTH_ROW = "interval coverage, true presence"
_SCORE_COLUMNS = ("model", "layer", "method", "aggregation", "rho_hat", "exact_rho", "automated_rho", "covers_exact")


def _order(values: Sequence) -> list:
    return list(dict.fromkeys(values))


def _aggregations(estimates: pd.DataFrame) -> list[str]:
    present = set(estimates["aggregation"])
    return [a for a in DEFAULT_AGGREGATIONS if a in present] + sorted(present - set(DEFAULT_AGGREGATIONS))


def _check(estimates: pd.DataFrame, cols: Sequence[str] = _SCORE_COLUMNS) -> None:
    missing = [c for c in cols if c not in estimates.columns]
    if missing:
        raise ValueError(f"estimates lack columns {missing}; write them with crowd.aggregate.aggregate_crowd")


def coverage_summary(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, aggregation): n_known (explanations with a known exact rho and an interval),
    n_covered, coverage (n_covered / n_known; NaN when none is known), and the same with ``_truth`` for
    the interval computed from the true presence at the same draws (simulated studies)."""
    _check(estimates)
    cols = {}
    for suffix, col in (("", "covers_exact"), ("_truth", "covers_exact_truth")):
        c = estimates[col] if col in estimates else pd.Series(pd.NA, index=estimates.index, dtype="boolean")
        known = c.notna()
        cols[f"_known{suffix}"] = known
        cols[f"_hit{suffix}"] = c.fillna(False).astype(bool) & known
    g = estimates.assign(**cols).groupby(["model", "layer", "aggregation"], sort=False)
    out = g.agg(n_known=("_known", "sum"), n_covered=("_hit", "sum"), n_known_truth=("_known_truth", "sum"),
                n_covered_truth=("_hit_truth", "sum")).reset_index()
    for suffix in ("", "_truth"):
        k = out[f"n_known{suffix}"]
        out[f"coverage{suffix}"] = np.where(k > 0, out[f"n_covered{suffix}"] / k.where(k > 0), np.nan)
    return out


def score_summary(estimates: pd.DataFrame) -> pd.DataFrame:
    """Long form of Tables 3/6: one row per (model, layer, method, aggregation) with mean, sem, n of the
    estimated rho over explanations (NaN estimates left out), n_degenerate, mean exact and automated rho."""
    _check(estimates)
    df = estimates.assign(_finite=np.isfinite(estimates["rho_hat"].to_numpy(dtype=float)))
    rows = []
    for (model, layer, method, agg), g in df.groupby(["model", "layer", "method", "aggregation"], sort=False):
        x = g["rho_hat"].to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        ex = g["exact_rho"].to_numpy(dtype=float)
        au = g["automated_rho"].to_numpy(dtype=float)
        rows.append({
            "model": model, "layer": layer, "method": method, "aggregation": agg,
            "mean": float(x.mean()) if x.size else np.nan,
            "sem": float(standard_error(x)) if x.size > 1 else np.nan,
            "n": int(x.size),
            "n_degenerate": int(g["degenerate"].sum()) if "degenerate" in g else 0,
            "exact_mean": float(np.nanmean(ex)) if np.isfinite(ex).any() else np.nan,
            "exact_sem": float(standard_error(ex)) if np.isfinite(ex).sum() > 1 else np.nan,
            "automated_mean": float(np.nanmean(au)) if np.isfinite(au).any() else np.nan,
            "automated_sem": float(standard_error(au)) if np.isfinite(au).sum() > 1 else np.nan,
        })
    return pd.DataFrame(rows)


def _col(model: str, layer: str, what: str) -> str:
    return f"{model}/{layer}: {what}"


def table3(estimates: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Tables 3/6 as text cells: a row per method (and the last row :data:`COVERAGE_ROW`); for each
    (model, layer) the columns "<model>/<layer>: <aggregation>" ("mean ± SEM" over explanations),
    "<model>/<layer>: n" (explanations with an estimate), ": exact" and ": automated" (mean ± SEM of the
    exact and automated scores of the same explanations; "n/a" where unknown). The coverage row holds
    "0.947 (36/38)" per aggregation: the share of intervals containing the exact rho; in simulated studies
    a further row :data:`COVERAGE_TRUTH_ROW` gives it for the same draws scored with the true presence."""
    summ = score_summary(estimates)
    cov = coverage_summary(estimates)
    aggs = _aggregations(estimates)
    mls = _order(zip(estimates["model"], estimates["layer"], strict=True))
    methods = _order(estimates["method"])
    truth_rows = [COVERAGE_TRUTH_ROW] if cov["n_known_truth"].sum() > 0 else []
    out = pd.DataFrame({"method": [*methods, COVERAGE_ROW, *truth_rows]})
    blank = [""] * (1 + len(truth_rows))
    for model, layer in mls:
        s = summ[(summ["model"] == model) & (summ["layer"] == layer)]
        for agg in aggs:
            cells = []
            for m in methods:
                r = s[(s["method"] == m) & (s["aggregation"] == agg)]
                cells.append(mean_pm_sem(r["mean"].iloc[0], r["sem"].iloc[0], digits) if len(r) else "n/a")
            c = cov[(cov["model"] == model) & (cov["layer"] == layer) & (cov["aggregation"] == agg)]
            for suffix in ("", "_truth")[: 1 + len(truth_rows)]:
                if len(c) and c[f"n_known{suffix}"].iloc[0] > 0:
                    cells.append(f"{c[f'coverage{suffix}'].iloc[0]:.3f} ({int(c[f'n_covered{suffix}'].iloc[0])}/"
                                 f"{int(c[f'n_known{suffix}'].iloc[0])})")
                else:
                    cells.append("n/a")
            out[_col(model, layer, agg)] = cells
        first = s.groupby("method", sort=False).first()
        out[_col(model, layer, "n")] = [str(int(s[s["method"] == m]["n"].max())) if m in first.index else "0"
                                         for m in methods] + blank
        for what in ("exact", "automated"):
            out[_col(model, layer, what)] = [
                mean_pm_sem(first.loc[m, f"{what}_mean"], first.loc[m, f"{what}_sem"], digits) if m in first.index
                else "n/a" for m in methods] + blank
    return out


def table3_markdown(estimates: pd.DataFrame, digits: int = 4, level: float | None = None) -> str:
    """Markdown of :func:`table3`: one section and table per (model, layer)."""
    t = table3(estimates, digits)
    aggs = _aggregations(estimates)
    if level is None:
        level = float(estimates["level"].iloc[0]) if "level" in estimates and len(estimates) else 0.95
    lines = ["# Crowdsourced evaluation (Tables 3 and 6 layout)", "",
             f"Estimated correlation score, mean ± SEM over explanations (one per neuron) per method and rating "
             f"aggregation; *interval coverage*: share of the {level:.0%} intervals that contain the exact score "
             "(explanations where it is known); *true presence* (simulated studies): the same for the estimate "
             "from the same draws scored with the true presence, i.e. without the raters' errors.", ""]
    for model, layer in _order(zip(estimates["model"], estimates["layer"], strict=True)):
        head = ["Method", *(AGGREGATION_LABELS.get(a, a) for a in aggs), "n", "exact ρ", "automated ρ"]
        cols = ["method", *(_col(model, layer, a) for a in aggs), *(_col(model, layer, w) for w in ("n", "exact",
                                                                                                   "automated"))]
        lines += [f"## {model} / {layer}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for _, row in t.iterrows():
            cells = [str(row[c]) for c in cols]
            if row["method"] in (COVERAGE_ROW, COVERAGE_TRUTH_ROW):
                cells[0] = f"*{row['method']}*"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def ttest_table(estimates: pd.DataFrame, alternative: str = "greater", equal_var: bool = True) -> pd.DataFrame:
    """Table 7: per (model, layer, aggregation) and ordered pair of distinct methods, Student's two-sample
    t-test of the explanations' estimated rho; H1 (``alternative`` "greater"): mean(method_a) >
    mean(method_b). Columns model, layer, aggregation, method_a, method_b, alternative, mean_a, mean_b,
    n_a, n_b, t, p (NaN where a method has fewer than 2 estimates)."""
    _check(estimates)
    rows = []
    for (model, layer, agg), g in estimates.groupby(["model", "layer", "aggregation"], sort=False):
        vals = {m: x["rho_hat"].to_numpy(dtype=float) for m, x in g.groupby("method", sort=False)}
        vals = {m: v[np.isfinite(v)] for m, v in vals.items()}
        for a, xa in vals.items():
            for b, xb in vals.items():
                if a == b:
                    continue
                t, p = two_sample_ttest(xa, xb, alternative=alternative, equal_var=equal_var) if min(
                    len(xa), len(xb)) >= 2 else (np.nan, np.nan)
                rows.append({"model": model, "layer": layer, "aggregation": agg, "method_a": a, "method_b": b,
                             "alternative": f"mean(method_a) {'>' if alternative == 'greater' else '<' if alternative == 'less' else '!='} mean(method_b)",
                             "mean_a": float(xa.mean()) if xa.size else np.nan,
                             "mean_b": float(xb.mean()) if xb.size else np.nan,
                             "n_a": int(xa.size), "n_b": int(xb.size), "t": t, "p": p})
    cols = ["model", "layer", "aggregation", "method_a", "method_b", "alternative", "mean_a", "mean_b", "n_a", "n_b",
            "t", "p"]
    return pd.DataFrame(rows, columns=cols)


def _items_of_presence(presence: pd.DataFrame) -> pd.DataFrame:
    """One row per item of soft_presence (its first aggregation's rows)."""
    first = presence["aggregation"].iloc[0] if len(presence) else None
    return presence[presence["aggregation"] == first].reset_index(drop=True)


def agreement_table(presence: pd.DataFrame, planned_raters: int | None = None) -> pd.DataFrame:
    """Fleiss' kappa over the non-gold items rated by exactly ``planned_raters`` raters (default: the most
    common number), for the whole study (scope "study") and per (model, layer) the items serve. Columns
    scope, model, layer, raters_per_item, n_items (used), n_items_other (rated by another number of
    raters, left out), kappa, yes_rate."""
    it = _items_of_presence(presence)
    if "is_gold" in it:
        it = it[~it["is_gold"].fillna(False).astype(bool)]
    total = it["n_ratings"].to_numpy(dtype=np.int64)
    yes = it["n_yes"].to_numpy(dtype=np.int64)
    if planned_raters is None:
        pos = total[total > 0]
        planned_raters = int(np.bincount(pos).argmax()) if pos.size else 0
    evals = [json.loads(s) for s in it["evaluations"]] if "evaluations" in it else [[] for _ in range(len(it))]
    scopes = [("study", "", "", np.ones(len(it), dtype=bool))]
    for ml in sorted({x for e in evals for x in e}):
        model, _, layer = ml.partition("/")
        scopes.append(("model/layer", model, layer, np.asarray([ml in e for e in evals], dtype=bool)))
    rows = []
    for scope, model, layer, mask in scopes:
        full = mask & (total == planned_raters)
        rated = mask & (total > 0)
        kappa = np.nan
        if full.any() and planned_raters >= 2:
            kappa = fleiss_kappa(yes[full], total[full])
        rows.append({"scope": scope, "model": model, "layer": layer, "raters_per_item": int(planned_raters),
                     "n_items": int(full.sum()), "n_items_other": int((rated & ~full).sum()), "kappa": kappa,
                     "yes_rate": float(yes[full].sum() / total[full].sum()) if full.any() else np.nan})
    return pd.DataFrame(rows)


def rater_table(ratings: pd.DataFrame, items: pd.DataFrame, presence: pd.DataFrame,
                consensus: str = "bragg_model") -> pd.DataFrame:
    """Per rater (one answer per item, as the aggregation counts them): n_ratings, n_items, n_tasks,
    yes_rate, n_gold and gold_accuracy (answers equal to the gold answer), n_consensus and
    consensus_agreement (answers equal to the ``consensus`` aggregation's presence thresholded at 0.5, on
    non-gold items; falls back to the first aggregation present), and the consensus used. Sorted by
    n_ratings, most first."""
    index = item_index(items)
    rated = dedupe_ratings(ratings, index)
    n_items = index.n
    is_gold = items["is_gold"].fillna(False).to_numpy(dtype=bool) if "is_gold" in items else np.zeros(n_items, bool)
    ga = (pd.to_numeric(items["gold_answer"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
          if "gold_answer" in items else np.full(n_items, np.nan))
    aggs = list(dict.fromkeys(presence["aggregation"]))
    used = consensus if consensus in aggs else (aggs[0] if aggs else consensus)
    cons = np.full(n_items, np.nan)
    p = presence[presence["aggregation"] == used]
    row = index.find(p["image_id"].astype(str).to_numpy(dtype=object), p["concept"].astype(str).to_numpy(dtype=object))
    ok = row >= 0
    cons[row[ok]] = p["presence"].to_numpy(dtype=np.float64)[ok]
    label = np.where(cons > 0.5, 1.0, np.where(cons < 0.5, 0.0, np.nan))
    r, it, y = rated.rater, rated.item, rated.rating.astype(np.float64)
    n_r = len(rated.raters)
    gold = is_gold[it] & np.isfinite(ga[it])
    cmask = ~is_gold[it] & np.isfinite(label[it])
    cnt = lambda m: np.bincount(r[m], minlength=n_r)  # noqa: E731
    n_gold = cnt(gold)
    gold_hit = np.bincount(r[gold], weights=(y[gold] == ga[it][gold]), minlength=n_r)
    n_cons = cnt(cmask)
    cons_hit = np.bincount(r[cmask], weights=(y[cmask] == label[it][cmask]), minlength=n_r)
    n_all = cnt(np.ones(len(r), dtype=bool))
    tasks = pd.DataFrame({"r": r, "t": rated.task}).drop_duplicates().groupby("r").size()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = pd.DataFrame({
            "rater": rated.raters,
            "n_ratings": n_all,
            "n_items": n_all,
            "n_tasks": tasks.reindex(range(n_r), fill_value=0).to_numpy(),
            "yes_rate": np.bincount(r, weights=y, minlength=n_r) / np.maximum(n_all, 1),
            "n_gold": n_gold,
            "gold_accuracy": np.where(n_gold > 0, gold_hit / np.maximum(n_gold, 1), np.nan),
            "n_consensus": n_cons,
            "consensus_agreement": np.where(n_cons > 0, cons_hit / np.maximum(n_cons, 1), np.nan),
            "consensus": used,
        })
    # n_ratings counts every answer the rater gave (repeats included); n_items the distinct items
    raw = ratings["rater"].astype(str).value_counts()
    out["n_ratings"] = raw.reindex(out["rater"]).fillna(0).to_numpy(dtype=np.int64)
    return out.sort_values(["n_ratings", "rater"], ascending=[False, True], kind="stable").reset_index(drop=True)


def estimates_figure(estimates: pd.DataFrame, aggregation: str | None = None) -> plt.Figure:
    """Left: each explanation's estimate with its interval (error bars) beside its exact score (or the
    automated score where the exact one is unknown), grouped by method; right: estimate against that
    score with the identity line. The title gives the interval coverage of the exact scores."""
    _check(estimates, (*_SCORE_COLUMNS, "lo", "hi"))
    aggs = _aggregations(estimates)
    if aggregation is None:
        aggregation = next((a for a in (HEADLINE_AGGREGATION, "bragg_model") if a in aggs), aggs[0] if aggs else "")
    df = estimates[estimates["aggregation"] == aggregation].copy()
    exact = df["exact_rho"].to_numpy(dtype=float)
    ref = np.where(np.isfinite(exact), exact, df["automated_rho"].to_numpy(dtype=float))
    df["_ref"], df["_is_exact"] = ref, np.isfinite(exact)
    df = df[np.isfinite(df["rho_hat"].to_numpy(dtype=float))]
    level = float(df["level"].iloc[0]) if "level" in df and len(df) else 0.95
    many_ml = len(_order(zip(df["model"], df["layer"], strict=True))) > 1
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x0, ticks, labels = 0, [], []
    groups = df.groupby(["model", "layer", "method"], sort=False)
    for gi, ((model, layer, method), g) in enumerate(groups):
        g = g.sort_values("_ref", na_position="last")
        x = x0 + np.arange(len(g))
        col = colors[gi % len(colors)]
        y = g["rho_hat"].to_numpy(dtype=float)
        err = np.vstack([y - g["lo"].to_numpy(dtype=float), g["hi"].to_numpy(dtype=float) - y])
        ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0), fmt="o", ms=3, color=col, elinewidth=1,
                    capsize=0, label=None)
        ex = g["_is_exact"].to_numpy()
        ax.scatter(x[ex], g["_ref"].to_numpy()[ex], marker="_", s=80, color="black", zorder=3, linewidths=1.5)
        ax.scatter(x[~ex], g["_ref"].to_numpy()[~ex], marker="x", s=20, color="0.4", zorder=3)
        ax2.errorbar(g["_ref"], y, yerr=np.where(np.isfinite(err), err, 0), fmt="o", ms=3, color=col,
                     elinewidth=0.6, alpha=0.8, label=f"{method} ({model}/{layer})" if many_ml else method)
        ticks.append(x0 + (len(g) - 1) / 2)
        labels.append(f"{method}\n{model}/{layer}" if many_ml else method)
        x0 += len(g) + 2
    handles = [Line2D([], [], marker="o", ls="-", color="0.3", ms=4, label=f"estimate ± {level:.0%} interval"),
               Line2D([], [], marker="_", ls="", color="black", ms=10, mew=1.5, label="exact ρ"),
               Line2D([], [], marker="x", ls="", color="0.4", ms=5, label="automated ρ (exact unknown)")]
    ax.legend(handles=handles, loc="best", fontsize=8, frameon=False)
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_xlabel("explanations, grouped by method (sorted by reference score)")
    ax.set_ylabel("correlation score ρ")
    ax.axhline(0, color="0.7", lw=0.8)
    ax.grid(True, axis="y", alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    finite = df["_ref"].to_numpy(dtype=float)
    vals = np.r_[finite[np.isfinite(finite)], df["lo"].to_numpy(dtype=float), df["hi"].to_numpy(dtype=float)]
    vals = vals[np.isfinite(vals)]
    lo, hi = (float(vals.min()), float(vals.max())) if vals.size else (-1.0, 1.0)
    pad = 0.05 * max(hi - lo, 0.1)
    ax2.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", ls="--", lw=1, label="identity")
    ax2.set_xlabel("exact ρ (automated where exact unknown)")
    ax2.set_ylabel("estimated ρ from ratings")
    ax2.grid(True, alpha=0.25)
    ax2.spines[["top", "right"]].set_visible(False)
    ax2.legend(loc="upper left", fontsize=7, frameon=False)
    known = df["covers_exact"].notna()
    hits = int(df["covers_exact"][known].astype(bool).sum())
    cov = (f"{level:.0%} intervals contain the exact ρ for {hits}/{int(known.sum())} explanations "
           f"({hits / known.sum():.0%})" if known.any() else "exact ρ unknown: no coverage")
    fig.suptitle(f"{AGGREGATION_LABELS.get(aggregation, aggregation)}: {cov}", fontsize=11)
    fig.tight_layout()
    return fig
