"""Fidelity study: why MG-IS's advantage over uniform sampling is smaller on the default study than in
the paper (issue 11, item 5; SPEC sec. 3, 5; seed 001 Table 4 and Fig. 9).

The paper reports MG-IS cutting the RCE ~7x against uniform sampling at n = 180 on concepts its guide
detects with AUC 0.99-1 (Table 4: 0.677 / 0.089 = 7.6x) and needing ~13x fewer inputs for equal
error. Two things set that ratio besides the implementation: how rare the concept is (ImageNet classes
are ~0.1 % of the images, Fashion-MNIST classes 10 %) and how well the guide ranks the concept's
images (its AUC); |rho| matters less. This module measures both ways:

**Observed** (``observed_pairs``, ``binned_ratio``): on a study's Setting 1 grid, per (pair, guide)
the mean RCE of uniform and of MG-IS at n = ``table_n``, with the concept's prevalence on D, |rho| and
the guide's AUC; then the RCE ratio uniform / MG-IS (ratio of the bin means, as Table 4 reports it)
in bins of each.

**Synthetic** (``simulate_cell``, ``synthetic_grid``): prevalence pi, correlation rho and guide AUC set
by hand, everything else as in Setting 1. Per pair, N inputs with exactly round(pi N) positives
(c = 1) at random positions; activations a = s c + e, e ~ N(0, 1), with

    s = rho / sqrt(pi (1 - pi) (1 - rho^2))          so that corr(a, c) = rho in the population;

the guide is the calibrated posterior of a binormal score, z = mu c + e', e' ~ N(0, 1) independent
of e, mu = sqrt(2) Phi^-1(AUC) (so P(z+ > z-) = AUC):

    c_hat = sigmoid(mu z - mu^2 / 2 + logit(pi))      (the exact P(c = 1 | z)).

These go through the same code as Setting 1 (``studies.setting1.run_setting1`` ->
``sampling.sampling_grid`` -> ``sampling.PairDraws``): the same q, weights, estimator and RCE, scored
against the exact rho on the N inputs (the planted rho is kept beside it as ``rho_planted``).
``ratio_table`` gives per cell the RCE of each sampler at n, their ratio, and the equal-error input
ratio (how many times fewer inputs MG-IS needs to reach uniform's RCE at the largest n, as Fig. 9
computes it); ``planted_coverage`` how often the 95 % intervals contain the planted rho.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, ndtri

from neuronaudit.report.curves import equal_error_ratio
from neuronaudit.sampling import summarise_rce
from neuronaudit.studies.setting1 import AUC_BINS, run_setting1

__all__ = [
    "PAPER_TOP_BIN_RATIO",
    "PAPER_INPUT_RATIO",
    "planted_signal",
    "binormal_shift",
    "simulate_cell",
    "synthetic_grid",
    "ratio_table",
    "planted_coverage",
    "concept_prevalence",
    "observed_pairs",
    "binned_ratio",
    "matching_prevalence",
    "observed_tables",
    "summary",
    "nearest_n",
    "figure",
]

PAPER_TOP_BIN_RATIO = 0.677 / 0.089  # seed 001 Table 4, AUC 0.99-1, n = 180 (SPEC sec. 5): 7.6x
PAPER_INPUT_RATIO = 13.0  # SPEC sec. 3: MG-IS needs ~13x fewer inputs (v2; v1 said ~30x)
SAMPLERS = ({"name": "uniform"}, {"name": "mg_is", "gamma": 0.2})
PREVALENCE_BINS = (0.0, 0.003, 0.03, 0.15, 0.35, 1.0)
ABS_RHO_BINS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)


def planted_signal(rho: float, prevalence: float) -> float:
    """s with corr(s c + e, c) = rho for c ~ Bernoulli(prevalence), e ~ N(0, 1) independent."""
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must be in (0, 1), got {prevalence}")
    if not -1 < rho < 1:
        raise ValueError(f"rho must be in (-1, 1), got {rho}")
    return rho / np.sqrt(prevalence * (1 - prevalence) * (1 - rho * rho))


def binormal_shift(auc: float) -> float:
    """mu with P(z+ > z-) = auc for z- ~ N(0, 1), z+ ~ N(mu, 1): mu = sqrt(2) Phi^-1(auc)."""
    if not 0.5 <= auc < 1:
        raise ValueError(f"guide AUC must be in [0.5, 1), got {auc}")
    return float(np.sqrt(2.0) * ndtri(auc))


def simulate_cell(
    n_inputs: int, prevalence: float, rho: float, auc: float, n_pairs: int, seed: int | Sequence[int] = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(acts, c, c_guide), each (n_inputs, n_pairs): one column per synthetic (neuron, concept) pair
    (module docstring). Each column has exactly max(2, round(prevalence * n_inputs)) positives."""
    rng = np.random.default_rng(seed)
    k = max(2, int(round(prevalence * n_inputs)))
    if k >= n_inputs:
        raise ValueError(f"prevalence {prevalence} leaves no negative among {n_inputs} inputs")
    # k positives per column at random rows: argsort of uniform keys, vectorised over columns
    pos = np.argpartition(rng.random((n_inputs, n_pairs)), k, axis=0)[:k]
    c = np.zeros((n_inputs, n_pairs))
    np.put_along_axis(c, pos, 1.0, axis=0)
    acts = planted_signal(rho, prevalence) * c + rng.standard_normal((n_inputs, n_pairs))
    mu = binormal_shift(auc)
    z = mu * c + rng.standard_normal((n_inputs, n_pairs))
    guide = expit(mu * z - mu * mu / 2 + np.log(prevalence / (1 - prevalence)))
    return acts, c, guide


def synthetic_grid(
    prevalences: Sequence[float],
    rhos: Sequence[float],
    aucs: Sequence[float],
    *,
    n_inputs: int = 50_000,
    pairs_per_cell: int = 8,
    ns: Sequence[int] = (25, 50, 100, 180, 400, 800, 1600),
    seeds: int = 10,
    gamma: float = 0.2,
    estimator: str = "unbiased",
    rng: int = 0,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """Setting 1 (uniform and MG-IS) on every (prevalence, rho, AUC) cell: ``run_setting1`` rows plus
    prevalence, rho_planted, auc_planted (the cell) and cell (its index). The loop runs over cells;
    each call is vectorised over the cell's pairs, seeds and sample sizes."""
    samplers = [{"name": "uniform"}, {"name": "mg_is", "gamma": float(gamma)}]
    frames = []
    cells = [(p, r, a) for p in prevalences for r in rhos for a in aucs]
    for i, (prev, rho, auc) in enumerate(cells):
        acts, c, guide = simulate_cell(n_inputs, prev, rho, auc, pairs_per_cell, seed=[rng, i])
        idx = np.arange(pairs_per_cell)
        pairs = pd.DataFrame({"neuron_idx": idx, "concept_idx": idx, "neuron": idx.astype(str),
                              "concept": [f"cell{i}_c{j}" for j in idx], "kind": "synthetic"})
        df = run_setting1(acts, c, guide, pairs, model="synthetic", layer=f"cell{i}", concept_model="planted",
                          samplers=samplers, ns=ns, seeds=range(seeds), estimator=estimator, rng=rng + i,
                          chunk_size=max(1, pairs_per_cell), n_threads=n_threads)
        df["pair"] = df["pair"] + i * pairs_per_cell  # distinct pairs across cells
        df["cell"] = i
        df["prevalence"] = prev
        df["rho_planted"] = rho
        df["auc_planted"] = auc
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["sampler"] = out["sampler"].astype(str)
    return out


def _inputs_ratio(curves: pd.DataFrame) -> tuple[float, bool]:
    """Equal-error input ratio of one cell (report.curves.equal_error_ratio, Fig. 9's definition)."""
    u = curves[curves["sampler"] == "uniform"]
    g = curves[curves["sampler"] != "uniform"]
    res = equal_error_ratio(u, g)
    return (np.nan, False) if res is None else (float(res[0]), bool(res[1]))


def ratio_table(df: pd.DataFrame, n: int = 180, floor: float = 0.05,
                by: Sequence[str] = ("prevalence", "rho_planted", "auc_planted")) -> pd.DataFrame:
    """Per group of ``by``: RCE of uniform and MG-IS at n (mean over seeds per pair, mean ± SEM over
    pairs, |rho| < floor excluded: ``summarise_rce``), their ratio uniform / MG-IS, the share of
    uniform samples with no positive-negative variation, and the equal-error input ratio over all n
    (``inputs_ratio``; ``inputs_ratio_lower_bound`` when MG-IS is already below uniform's final RCE at
    its smallest n). Also the realised guide AUC and exact rho (means over the group's pairs)."""
    by = list(by)
    curves = summarise_rce(df, floor=floor, by=[*by, "sampler", "n"])
    at_n = curves[curves["n"] == n]
    if at_n.empty:
        raise ValueError(f"no rows with n == {n}; available: {sorted(df['n'].unique())}")
    wide = at_n.pivot_table(index=by, columns="sampler", values=["rce", "sem", "share_no_variation"],
                            observed=True)
    out = pd.DataFrame(index=wide.index)
    mg = [s for s in wide["rce"].columns if s != "uniform"]
    if "uniform" not in wide["rce"].columns or not mg:
        raise ValueError("ratio_table needs uniform and MG-IS rows")
    mg = mg[0]
    out["rce_uniform"] = wide["rce"]["uniform"]
    out["sem_uniform"] = wide["sem"]["uniform"]
    out["rce_mg_is"] = wide["rce"][mg]
    out["sem_mg_is"] = wide["sem"][mg]
    out["rce_ratio"] = out["rce_uniform"] / out["rce_mg_is"]
    out["share_no_variation_uniform"] = wide["share_no_variation"]["uniform"]
    counts = at_n[at_n["sampler"] == "uniform"].set_index(by)[["n_pairs", "n_excluded"]]
    out = out.join(counts)
    ratios = {key: _inputs_ratio(g) for key, g in curves.groupby(by, observed=True)}
    out["inputs_ratio"] = [ratios.get(k, (np.nan, False))[0] for k in out.index]
    out["inputs_ratio_lower_bound"] = [ratios.get(k, (np.nan, False))[1] for k in out.index]
    first = df.drop_duplicates("pair")
    kept = first[first["rho"].abs() >= floor]
    real = kept.groupby(by, observed=True).agg(
        **({"guide_auc": ("guide_auc", "mean")} if "guide_auc" in kept else {}), rho=("rho", "mean"))
    out = out.join(real).reset_index()
    out["n"] = n
    return out


def planted_coverage(df: pd.DataFrame, by: Sequence[str] = ("sampler", "n"), truth: str = "rho_planted") -> pd.DataFrame:
    """Share of the 95 % intervals [lo, hi] of ``synthetic_grid`` rows that contain the planted rho
    (``truth``), per group; degenerate samples (no interval) count as misses and are counted."""
    by = list(by)
    hit = (df["lo"] <= df[truth]) & (df[truth] <= df["hi"])
    work = df[by].assign(covered=hit.to_numpy(), degenerate=df["se"].isna().to_numpy())
    out = work.groupby(by, observed=True).agg(intervals=("covered", "size"), covered=("covered", "sum"),
                                              degenerate=("degenerate", "sum"))
    out["coverage"] = out["covered"] / out["intervals"]
    return out.reset_index()


# ----------------------------------------------------------------------------------------------
# Observed: the default study's own pairs
# ----------------------------------------------------------------------------------------------
def concept_prevalence(labels: pd.DataFrame, image_ids: Sequence[str]) -> pd.Series:
    """Share of the images ``image_ids`` (D) where each concept is present, from labels.parquet
    (image_id, concept, present)."""
    missing = {"image_id", "concept", "present"} - set(labels.columns)
    if missing:
        raise KeyError(f"labels table lacks columns {sorted(missing)}")
    d = labels[labels["image_id"].astype(str).isin(pd.Index(image_ids).astype(str))]
    if d.empty:
        raise ValueError("no label rows for the probing images")
    return d.groupby(d["concept"].astype(str))["present"].mean().rename("prevalence")


def observed_pairs(rce: pd.DataFrame, prevalence: pd.Series, n: int, floor: float = 0.05) -> pd.DataFrame:
    """One row per (guide, pair) of a Setting 1 grid at sample size n: concept, prevalence, rho, |rho|,
    guide_auc, and the seed-mean RCE of uniform and MG-IS (``rce_uniform``, ``rce_mg_is``). Pairs with
    |rho| < floor or no prevalence are dropped; ``attrs['excluded']`` counts them by reason."""
    need = {"concept_model", "pair", "concept", "sampler", "n", "rho", "rce", "guide_auc"}
    missing = need - set(rce.columns)
    if missing:
        raise KeyError(f"Setting 1 rows lack columns {sorted(missing)}")
    sub = rce[(rce["n"] == n) & rce["sampler"].astype(str).isin(["uniform", "mg_is"])]
    if sub.empty:
        raise ValueError(f"no uniform / mg_is rows at n = {n}; available n: {sorted(rce['n'].unique())}")
    keys = ["concept_model", "pair", "concept", "rho", "guide_auc"]
    per = sub.assign(sampler=sub["sampler"].astype(str), concept=sub["concept"].astype(str)).pivot_table(
        index=keys, columns="sampler", values="rce", aggfunc="mean", observed=True).reset_index()
    per.columns.name = None
    per = per.rename(columns={"uniform": "rce_uniform", "mg_is": "rce_mg_is"})
    per["prevalence"] = per["concept"].map(prevalence)
    per["abs_rho"] = per["rho"].abs()
    low = ~(per["abs_rho"] >= floor)
    no_prev = per["prevalence"].isna() & ~low
    out = per[~low & ~no_prev].reset_index(drop=True)
    out.attrs["excluded"] = {f"|rho| < {floor}": int(low.sum()), "no prevalence on D": int(no_prev.sum())}
    return out[["concept_model", "pair", "concept", "prevalence", "rho", "abs_rho", "guide_auc",
                "rce_uniform", "rce_mg_is"]]


def _bin_labels(edges: Sequence[float]) -> list[str]:
    return [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def binned_ratio(pairs: pd.DataFrame, by: str, edges: Sequence[float], group: Sequence[str] = ("concept_model",)) -> pd.DataFrame:
    """RCE ratio uniform / MG-IS per bin of ``by`` (left-closed bins, the last includes its upper edge):
    the ratio of the bin means (as Table 4), the geometric mean of the per-pair ratios, pair counts.
    Every bin is listed (n_pairs = 0 when empty)."""
    edges = np.asarray(edges, dtype=float)
    labels = _bin_labels(edges)
    x = pairs[by].to_numpy(dtype=float)
    code = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(labels) - 1)
    work = pairs.assign(bin=pd.Categorical.from_codes(code, labels),
                        log_ratio=np.log(pairs["rce_uniform"] / pairs["rce_mg_is"]))
    group = list(group)
    g = work.groupby([*group, "bin"], observed=False)
    out = g.agg(n_pairs=("pair", "size"), rce_uniform=("rce_uniform", "mean"), rce_mg_is=("rce_mg_is", "mean"),
                geo_mean_ratio=("log_ratio", "mean"), median_value=(by, "median"))
    out["geo_mean_ratio"] = np.exp(out["geo_mean_ratio"])
    out["rce_ratio"] = out["rce_uniform"] / out["rce_mg_is"]
    out = out.reset_index().rename(columns={"bin": f"{by}_bin", "median_value": f"median_{by}"})
    out.insert(len(group), "variable", by)
    return out


def observed_tables(pairs: pd.DataFrame, top_auc: float = 0.99) -> pd.DataFrame:
    """``binned_ratio`` by prevalence, |rho| and guide AUC (Table 4's bins) over all pairs
    (``subset`` "all"), and by prevalence and |rho| over the pairs whose guide AUC is at least
    ``top_auc`` (``subset`` "guide AUC 0.99-1", Table 4's top bin), stacked with a common ``bin``
    and ``median_value`` column."""
    frames = []
    top = pairs[pairs["guide_auc"] >= top_auc]
    plan = [("all", pairs, by, edges) for by, edges in
            (("prevalence", PREVALENCE_BINS), ("abs_rho", ABS_RHO_BINS), ("guide_auc", AUC_BINS))]
    plan += [(f"guide AUC {top_auc:g}-1", top, by, edges) for by, edges in
             (("prevalence", PREVALENCE_BINS), ("abs_rho", ABS_RHO_BINS))]
    for subset, data, by, edges in plan:
        t = binned_ratio(data, by, edges).rename(columns={f"{by}_bin": "bin", f"median_{by}": "median_value"})
        t.insert(1, "subset", subset)
        frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    out["bin"] = out["bin"].astype(str)
    return out


def matching_prevalence(table: pd.DataFrame, target_rce: float, column: str = "rce_uniform") -> float:
    """The prevalence at which ``column`` of a ratio table (one rho, one AUC, several prevalences)
    reaches ``target_rce``, by linear interpolation in log prevalence; NaN when out of range."""
    t = table.sort_values("prevalence")
    x, y = np.log(t["prevalence"].to_numpy(float)), t[column].to_numpy(float)
    for i in range(len(t) - 1):
        if (y[i] - target_rce) * (y[i + 1] - target_rce) <= 0 and y[i] != y[i + 1]:
            return float(np.exp(x[i] + (target_rce - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i])))
    return float("nan")


def summary(table: pd.DataFrame, observed: pd.DataFrame | None = None, auc_min: float = 0.99,
            paper_uniform: float = 0.677, paper_mg_is: float = 0.089) -> dict[str, object]:
    """Headline numbers for docs and the report: the synthetic ratio at each prevalence for the
    guides with AUC >= auc_min, the prevalence at which synthetic uniform reaches the paper's uniform
    RCE, and (``observed``) the study's own top-bin ratio."""
    top = table[table["auc_planted"] >= auc_min]
    out: dict[str, object] = {"paper_rce_ratio": paper_uniform / paper_mg_is, "paper_inputs_ratio": PAPER_INPUT_RATIO}
    out["synthetic"] = top[["prevalence", "rho_planted", "auc_planted", "rce_uniform", "rce_mg_is", "rce_ratio",
                            "inputs_ratio"]].to_dict("records")
    matches = {}
    for (rho, auc), g in top.groupby(["rho_planted", "auc_planted"]):
        matches[f"rho={rho:g}, auc={auc:g}"] = matching_prevalence(g, paper_uniform)
    out["prevalence_matching_paper_uniform"] = matches
    if observed is not None and not observed.empty:
        top_pairs = observed[observed["guide_auc"] >= auc_min]
        out["observed_top_bin"] = {
            str(guide): {
                "pairs": int(len(o)),
                "median_prevalence": float(o["prevalence"].median()),
                "rce_uniform": float(o["rce_uniform"].mean()),
                "rce_mg_is": float(o["rce_mg_is"].mean()),
                "rce_ratio": float(o["rce_uniform"].mean() / o["rce_mg_is"].mean()),
            }
            for guide, o in top_pairs.groupby("concept_model")
        }
    return out


def nearest_n(values: Sequence[int], target: int) -> int:
    """The sample size of ``values`` nearest ``target`` (the smaller on a tie), as Table 4 picks it."""
    vals = np.asarray(sorted(set(int(v) for v in values)))
    return int(vals[np.argmin(np.abs(vals - target))])


def figure(synthetic: pd.DataFrame, observed: pd.DataFrame | None = None, settings: Mapping | None = None):
    """RCE ratio uniform / MG-IS at n (left) and the equal-error input ratio (right) against the
    synthetic prevalence, one colour per planted guide AUC and a line style per planted rho; the
    paper's 7.6x (Table 4, AUC 0.99-1) and ~13x (Fig. 9) as dashed lines; the study's own pairs with
    guide AUC 0.99-1, binned by prevalence, as black points with their pair counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = {"width": 6.0, "height": 4.6, "title": None, **{k: v for k, v in (settings or {}).items() if v is not None}}
    fig, axes = plt.subplots(1, 2, figsize=(2 * s["width"], s["height"]), constrained_layout=True)
    n = int(synthetic["n"].iloc[0]) if len(synthetic) else 180
    aucs = sorted(synthetic["auc_planted"].unique())
    rhos = sorted(synthetic["rho_planted"].unique())
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(1, len(aucs))))
    styles = ["-", "--", ":", "-."]
    for ax, col, paper, ylabel in (
        (axes[0], "rce_ratio", PAPER_TOP_BIN_RATIO, f"RCE ratio uniform / MG-IS at n = {n} (x)"),
        (axes[1], "inputs_ratio", PAPER_INPUT_RATIO, "inputs ratio for equal error, uniform / MG-IS (x)"),
    ):
        for ci, auc in enumerate(aucs):
            for ri, rho in enumerate(rhos):
                t = synthetic[(synthetic["auc_planted"] == auc) & (synthetic["rho_planted"] == rho)]
                t = t.sort_values("prevalence")
                label = f"guide AUC {auc:g}, rho {rho:g} ({int(t['n_pairs'].sum())} pairs)"
                ax.plot(t["prevalence"], t[col], styles[ri % len(styles)], marker="o", ms=3.5,
                        color=colors[ci], label=label)
                if col == "inputs_ratio":  # a lower bound: MG-IS beats uniform's final error at its smallest n
                    lb = t[t["inputs_ratio_lower_bound"].astype(bool)]
                    ax.plot(lb["prevalence"], lb[col], "^", ms=7, mfc="none", color=colors[ci])
        ax.axhline(paper, color="crimson", ls="--", lw=1.2)
        ax.text(0.02, paper, f"paper {paper:.1f}x" if col == "rce_ratio" else f"paper ~{paper:.0f}x",
                color="crimson", ha="left", va="bottom", transform=ax.get_yaxis_transform())
        for x, what in ((0.001, "ImageNet class ~0.1%"), (0.1, "Fashion-MNIST class 10%")):
            ax.axvline(x, color="grey", ls=":", lw=1)
            ax.text(x, 0.02, what, rotation=90, color="grey", ha="right", va="bottom", fontsize=8,
                    transform=ax.get_xaxis_transform())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concept prevalence in D (share of inputs, log)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if observed is not None and len(observed):
        o = observed[(observed["variable"] == "prevalence") & (observed["subset"] == "guide AUC 0.99-1")
                     & (observed["n_pairs"] > 0)]
        for guide, g in o.groupby("concept_model"):
            axes[0].plot(g["median_value"], g["rce_ratio"], "ks", ms=6, label=f"this study, guide {guide}, AUC 0.99-1")
            for _, r in g.iterrows():
                axes[0].annotate(f"{int(r['n_pairs'])}", (r["median_value"], r["rce_ratio"]), textcoords="offset points",
                                 xytext=(4, 4), fontsize=7)
        if o.empty:
            axes[0].text(0.02, 0.95, "this study: no pairs with guide AUC 0.99-1", color="red",
                         transform=axes[0].transAxes, va="top", fontsize=8)
    axes[0].set_title(f"RCE ratio at n = {n} (paper Table 4: 7.6x at AUC 0.99-1)")
    axes[1].set_title("inputs MG-IS saves at equal error (paper Fig. 9: ~13x); ^ = lower bound")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, -0.02 - 0.035 * (len(labels) // 3)))
    fig.suptitle(s["title"] or "Fidelity: MG-IS's advantage over uniform grows as the concept gets rarer "
                 "and the guide better (synthetic, Setting 1 code)")
    return fig
