"""Setting 1: samplers compared on simulated ratings without label noise (SPEC sec. 5; seed 001 Sec. 4,
B.1, B.3, B.8, Figs. 7, 9, 12, Table 4).

Ground truth c_t(x) is known on every input (e.g. ImageNet labels), so the exact rho of every
(neuron, concept) pair is known and each sampler's estimate can be scored by its RCE.

Pairs (``select_pairs``): for each neuron, the ground-truth concept with the highest exact
correlation over the whole dataset ("best"), plus ``n_random`` (neuron, concept) pairs drawn
uniformly at random without replacement among the remaining pairs ("random"). The best-concept pairs
mimic explanations worth evaluating; random pairs cover weak and negative correlations.

Outputs are long DataFrames with columns model, layer, neuron, concept, concept_model, sampler, n,
seed, rho, rho_hat, rce, n_distinct, no_variation (the sample showed no variation in c, so rho_hat = 0
was reported), se, lo, hi (the delta-method standard error of rho_hat and its 95% interval, NaN where
no_variation; ``sampling.estimates_from_sums``), pair (+ guide_auc, gamma/alpha for the sweeps).
``coverage_table`` reports how often the intervals contain the exact rho.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from neuronaudit.aggregation import standard_error
from neuronaudit.sampling import DEFAULT_NS, DEFAULT_SAMPLERS, sampling_grid, summarise_rce
from neuronaudit.scoring import auc_scores, pairwise_correlation

__all__ = [
    "AUC_BINS",
    "select_pairs",
    "pair_guide_auc",
    "run_setting1",
    "gamma_sweep",
    "alpha_sweep",
    "auc_bin_table",
    "coverage_table",
    "summary_table",
]

AUC_BINS = (0.0, 0.6, 0.8, 0.95, 0.99, 1.0)  # seed 001 Table 4
COLUMNS = ["model", "layer", "neuron", "concept", "concept_model", "sampler", "n", "seed", "rho", "rho_hat", "rce"]


def _names(names, count: int) -> np.ndarray:
    if names is None:
        return np.arange(count)
    names = np.asarray(names)
    if len(names) != count:
        raise ValueError(f"expected {count} names, got {len(names)}")
    return names


def select_pairs(
    acts: np.ndarray,
    labels: np.ndarray,
    n_random: int = 0,
    seed: int = 0,
    neuron_names: Sequence | None = None,
    concept_names: Sequence | None = None,
    min_positives: int = 1,
) -> pd.DataFrame:
    """(neuron, concept) pairs to study: each neuron's best ground-truth concept + n_random random pairs.

    acts: (N, K); labels: (N, T) ground-truth presence. "best" = argmax_t corr_D(a_k, c_t) over
    concepts with at least ``min_positives`` positive inputs (exact correlation, computed blockwise).
    Random pairs are uniform over the remaining (neuron, concept) pairs with such concepts.
    Returns neuron_idx, concept_idx, neuron, concept, rho, kind ("best" / "random").
    """
    acts = np.asarray(acts)
    labels = np.asarray(labels)
    k, t = acts.shape[1], labels.shape[1]
    nn, cn = _names(neuron_names, k), _names(concept_names, t)
    corr = pairwise_correlation(acts, labels)
    usable = labels.sum(axis=0) >= min_positives
    masked = np.where(usable[None, :] & np.isfinite(corr), corr, -np.inf)
    best = np.argmax(masked, axis=1)
    has = np.isfinite(masked[np.arange(k), best])
    best_n = np.flatnonzero(has)
    frames = [
        pd.DataFrame({"neuron_idx": best_n, "concept_idx": best[best_n], "kind": "best"})
    ]
    if n_random:
        rng = np.random.default_rng(seed)
        cand_c = np.flatnonzero(usable)
        total = k * len(cand_c)
        taken = set(zip(best_n.tolist(), best[best_n].tolist(), strict=True))
        n_random = min(n_random, total - len(taken))
        flat = rng.choice(total, size=min(total, n_random + len(taken)), replace=False)
        pairs = [(int(f // len(cand_c)), int(cand_c[f % len(cand_c)])) for f in flat]
        pairs = [p for p in pairs if p not in taken][:n_random]
        if pairs:
            rn, rc = map(np.asarray, zip(*pairs, strict=True))
            frames.append(pd.DataFrame({"neuron_idx": rn, "concept_idx": rc, "kind": "random"}))
    out = pd.concat(frames, ignore_index=True)
    out["neuron"] = nn[out["neuron_idx"]]
    out["concept"] = cn[out["concept_idx"]]
    out["rho"] = corr[out["neuron_idx"], out["concept_idx"]]
    return out[["neuron_idx", "concept_idx", "neuron", "concept", "rho", "kind"]]


def pair_guide_auc(c_true: np.ndarray, c_guide: np.ndarray, pairs: pd.DataFrame) -> np.ndarray:
    """AUC of the concept model's estimate against the ground truth, per pair's concept (Table 4 bins)."""
    concepts = pairs["concept_idx"].to_numpy()
    uniq, inv = np.unique(concepts, return_inverse=True)
    auc = auc_scores(np.asarray(c_guide)[:, uniq], np.asarray(c_true)[:, uniq])
    return auc[inv]


def _label_grid(df: pd.DataFrame, pairs: pd.DataFrame, model: str, layer: str, concept_model: str) -> pd.DataFrame:
    p = pairs.reset_index(drop=True)
    idx = df["pair"].to_numpy()
    out = pd.DataFrame(
        {
            "model": model,
            "layer": layer,
            "neuron": p["neuron"].to_numpy()[idx],
            "concept": p["concept"].to_numpy()[idx],
            "concept_model": concept_model,
        }
    )
    for col in ["sampler", "n", "seed", "rho", "rho_hat", "rce", "n_distinct", "no_variation", "se", "lo", "hi"]:
        out[col] = df[col].to_numpy()
    out["pair"] = idx
    if "guide_auc" in p:
        out["guide_auc"] = p["guide_auc"].to_numpy()[idx]
    return out


def run_setting1(
    acts: np.ndarray,
    c_true: np.ndarray,
    c_guide: np.ndarray,
    pairs: pd.DataFrame,
    *,
    model: str = "",
    layer: str = "",
    concept_model: str = "",
    samplers: Sequence[Mapping] = DEFAULT_SAMPLERS,
    ns: Sequence[int] = DEFAULT_NS,
    seeds: Sequence[int] = range(30),
    estimator: str = "unbiased",
    rng: int = 0,
    chunk_size: int = 32,
    n_threads: int | None = None,
) -> pd.DataFrame:
    """RCE grid per pair x sampler x n x seed (Fig. 9). acts (N, K); c_true, c_guide (N, T); pairs from
    select_pairs. Adds guide_auc (the concept model's AUC for the pair's concept)."""
    pairs = pairs.reset_index(drop=True).copy()
    pairs["guide_auc"] = pair_guide_auc(c_true, c_guide, pairs)
    grid = sampling_grid(
        acts,
        c_true,
        c_guide,
        samplers=samplers,
        ns=ns,
        seeds=seeds,
        estimator=estimator,
        rng=rng,
        neuron_index=pairs["neuron_idx"].to_numpy(),
        concept_index=pairs["concept_idx"].to_numpy(),
        chunk_size=chunk_size,
        n_threads=n_threads,
    )
    return _label_grid(grid, pairs, model, layer, concept_model)


def gamma_sweep(acts, c_true, c_guide, pairs, gammas=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), **kwargs) -> pd.DataFrame:
    """MG-IS for several gamma (Fig. 7); adds a ``gamma`` column. gamma = 0 needs c_guide > 0 everywhere."""
    samplers = [{"name": "mg_is", "gamma": float(g), "label": f"mg_is(gamma={g:g})"} for g in gammas]
    df = run_setting1(acts, c_true, c_guide, pairs, samplers=samplers, **kwargs)
    df["gamma"] = df["sampler"].astype(str).map({s["label"]: s["gamma"] for s in samplers})
    return df


def alpha_sweep(acts, c_true, c_guide, pairs, alphas=(1.0, 2.0, 3.0, 4.0), gamma: float = 0.2, **kwargs) -> pd.DataFrame:
    """AG-IS for several alpha (Fig. 9), plus uniform and MG-IS for reference; adds an ``alpha`` column."""
    samplers = [{"name": "uniform"}, {"name": "mg_is", "gamma": gamma}] + [
        {"name": "ag_is", "alpha": float(a), "gamma": gamma, "label": f"ag_is(alpha={a:g})"} for a in alphas
    ]
    df = run_setting1(acts, c_true, c_guide, pairs, samplers=samplers, **kwargs)
    df["alpha"] = df["sampler"].astype(str).map({s["label"]: s["alpha"] for s in samplers if "label" in s})
    return df


def auc_bin_table(df: pd.DataFrame, n: int = 180, bins: Sequence[float] = AUC_BINS, floor: float = 0.05) -> pd.DataFrame:
    """Mean RCE at sample size n by the concept model's AUC bin and sampler (seed 001 Table 4).

    Bins are left-closed [lo, hi) except the last, which includes 1. Returns one row per (sampler, bin)
    with rce, sem, n_pairs, n_excluded.
    """
    if "guide_auc" not in df:
        raise KeyError("df has no guide_auc column (use run_setting1)")
    sub = df[df["n"] == n].copy()
    if sub.empty:
        raise ValueError(f"no rows with n == {n}; available: {sorted(df['n'].unique())}")
    edges = np.asarray(bins, dtype=float)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    code = np.clip(np.searchsorted(edges, sub["guide_auc"].to_numpy(), side="right") - 1, 0, len(labels) - 1)
    code = np.where(np.isfinite(sub["guide_auc"].to_numpy()), code, -1)
    sub = sub[code >= 0].assign(auc_bin=pd.Categorical.from_codes(code[code >= 0], labels))
    out = summarise_rce(sub, floor=floor, by=("sampler", "auc_bin"))
    return out


COVERAGE_COLUMNS = ["intervals", "covered", "degenerate", "coverage", "coverage_defined", "mean_se", "mean_width",
                    "n_pairs"]


def coverage_table(df: pd.DataFrame, by: Sequence[str] = ("sampler", "n")) -> pd.DataFrame:
    """Coverage of the 95% intervals: the share of samples whose interval [lo, hi] contains the exact rho.

    df: Setting 1 rows (``run_setting1`` / ``sampling_grid``: pair, rho, se, lo, hi). Rows with
    undefined (NaN) rho are left out. Per group of ``by`` (columns absent from df are skipped):
    ``intervals`` the samples (pair x seed rows), ``covered`` those with lo <= rho <= hi,
    ``degenerate`` those with no interval (no variation of c in the sample, or n < 2: se NaN), counted
    as misses; ``coverage`` = covered / intervals, ``coverage_defined`` = covered / (intervals -
    degenerate) (NaN if every sample is degenerate); ``mean_se`` and ``mean_width`` (hi - lo) over the
    defined intervals; ``n_pairs`` the distinct pairs.
    """
    missing = {"pair", "rho", "se", "lo", "hi"} - set(df.columns)
    if missing:
        raise KeyError(f"coverage_table needs the columns {sorted(missing)} (Setting 1 rows with intervals)")
    by = [b for b in by if b in df.columns]
    d = df[np.isfinite(df["rho"].to_numpy())]
    rho, lo, hi, se = (d[c].to_numpy() for c in ("rho", "lo", "hi", "se"))
    work = pd.DataFrame(
        {
            **{b: d[b].to_numpy() for b in by},
            "covered": (lo <= rho) & (rho <= hi),  # False where the interval is NaN (degenerate)
            "degenerate": np.isnan(se),
            "se": se,  # NaN exactly where degenerate, and so are lo, hi
            "width": hi - lo,
            "pair": d["pair"].to_numpy(),
        }
    )
    keys = by or np.zeros(len(work), dtype=int)  # no group columns: one group
    out = work.groupby(keys, observed=True).agg(
        intervals=("covered", "size"),
        covered=("covered", "sum"),
        degenerate=("degenerate", "sum"),
        mean_se=("se", "mean"),
        mean_width=("width", "mean"),
        n_pairs=("pair", "nunique"),
    )
    out["coverage"] = out["covered"] / out["intervals"]
    out["coverage_defined"] = out["covered"] / (out["intervals"] - out["degenerate"])  # 0 / 0 -> NaN
    return out.reset_index()[[*by, *COVERAGE_COLUMNS]]


def summary_table(df: pd.DataFrame, by: Sequence[str], value: str, digits: int = 4) -> pd.DataFrame:
    """Mean ± SEM of ``value`` per group (over rows, NaN ignored): columns *by, mean, sem, count, text."""
    by = list(by)
    g = df.groupby(by, observed=True)[value]
    out = g.agg(mean="mean", count="count").join(g.agg(standard_error).rename("sem")).reset_index()
    out["mean_pm_sem"] = [f"{m:.{digits}f} ± {s:.{digits}f}" for m, s in zip(out["mean"], out["sem"], strict=True)]
    return out[[*by, "mean", "sem", "count", "mean_pm_sem"]]
