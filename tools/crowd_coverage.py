"""Bias, RMSE and interval coverage of each crowd aggregation against the exact score (issue 9, items 5 and 7).

Two parts, both printed as Markdown tables (docs/crowd.md, "Which aggregation is the default"):

1. **The default study** (``--study results/default``): ``aggregate_crowd`` on the study's crowd files
   (simulated MTurk workers: honest error rates ~ Beta(2, 8), 10% random spammers, 3 raters per input),
   every aggregation, against each explanation's exact rho; plus the same draws scored with the true
   presence (``truth``: sampling error only).
2. **A synthetic sweep** (``synthetic_crowd``): mean error rate eta in {0.05, 0.1, 0.2, 0.3} x spammer share
   in {0, 0.1, 0.2}, heterogeneous raters (error ~ Beta(10 eta, 10 (1 - eta)) per rater), ``--seeds``
   replicates of ``--explanations`` simple explanations each (N = 4,000 inputs, n = 180 MG-IS draws, 3
   raters per input).

3. **Where the plug-in bias comes from** (``--sources``, the default study): the BRAgg (model prior) posterior's
   calibration per decile, EM's eta against the raters' true error rate, per-rater error rates by a
   Dawid-Skene two-coin EM (gold items held at their answer), and the estimate with each ingredient
   swapped: second moment c^2 vs c, the per-rater posterior, debiasing with the one-coin model, debiasing
   conditionally on each item's raters, a linear unbiased vote. These variants live here, not in the library:
   they are measured to explain the choice of the default, which is ``bragg_debiased``.

Per aggregation: bias = mean(rho_hat - exact), RMSE, median |error|, coverage = share of 95% intervals
containing the exact rho (a degenerate sample counts as a miss), mean SE, degenerate count. Seeds run in a
loop (each replicate is one vectorised ``aggregate_crowd`` call).

    .venv/bin/python tools/crowd_coverage.py                     # both parts, 20 seeds
    .venv/bin/python tools/crowd_coverage.py --no-sweep          # the default study only
    .venv/bin/python tools/crowd_coverage.py --no-study --seeds 5
    .venv/bin/python tools/crowd_coverage.py --sources --no-study --no-sweep
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from scipy import special  # noqa: E402

from neuronaudit.crowd.aggregate import (  # noqa: E402
    ALL_AGGREGATIONS,
    DEFAULT_AGGREGATIONS,
    _design_arrays,
    aggregate_crowd,
    choose_eta,
    dedupe_ratings,
    item_counts,
    item_index,
    soft_presence,
    synthetic_crowd,
)
from neuronaudit.crowd.interval import rho_interval  # noqa: E402

ORDER = list(DEFAULT_AGGREGATIONS) + [a for a in ALL_AGGREGATIONS if a not in DEFAULT_AGGREGATIONS]


def scores(estimates: pd.DataFrame) -> pd.DataFrame:
    """One row per aggregation (and ``truth``: the same draws scored with the true presence)."""
    est = estimates[np.isfinite(estimates["exact_rho"].to_numpy(dtype=float))]
    rows = []
    for agg, g in est.groupby("aggregation", sort=False):
        err = g["rho_hat"].to_numpy(dtype=float) - g["exact_rho"].to_numpy(dtype=float)
        rows.append({"aggregation": agg, "n": len(g), "bias": np.nanmean(err), "rmse": np.sqrt(np.nanmean(err**2)),
                     "median_abs_error": np.nanmedian(np.abs(err)),
                     "coverage": g["covers_exact"].astype(bool).mean(), "mean_se": np.nanmean(g["se"]),
                     "degenerate": int(g["degenerate"].sum())})
    g = est[est["aggregation"] == est["aggregation"].iloc[0]]
    if g["rho_hat_truth"].notna().any():
        err = g["rho_hat_truth"].to_numpy(dtype=float) - g["exact_rho"].to_numpy(dtype=float)
        rows.append({"aggregation": "truth", "n": len(g), "bias": np.mean(err), "rmse": np.sqrt(np.mean(err**2)),
                     "median_abs_error": np.median(np.abs(err)),
                     "coverage": g["covers_exact_truth"].astype(bool).mean(), "mean_se": np.nan, "degenerate": 0})
    return pd.DataFrame(rows)


def default_study(study: Path, estimator: str = "unbiased") -> pd.DataFrame:
    crowd = study / "crowd"
    files = {k: pd.read_parquet(crowd / f"{k}.parquet")
             for k in ("explanations", "design", "items", "ratings", "truth")}
    res = aggregate_crowd(files["explanations"], files["design"], files["items"], files["ratings"],
                          methods=ORDER, truth=files["truth"], planned_raters=3,
                          estimator=estimator)
    out = scores(res.estimates)
    out.attrs["eta"] = res.summary["eta"]
    return out


def sweep(seeds: int, explanations: int, etas, spams, concentration: float, estimator: str = "unbiased"
          ) -> pd.DataFrame:
    rows = []
    for eta in etas:
        for spam in spams:
            for seed in range(seeds):
                f = synthetic_crowd(n_explanations=explanations, n_inputs=4000, n=180, raters_per_input=3, eta=eta,
                                    seed=seed, error_concentration=concentration, spammer_fraction=spam)
                res = aggregate_crowd(f["explanations"], f["design"], f["items"], f["ratings"], methods=ORDER,
                                      truth=f["truth"], planned_raters=3, estimator=estimator)
                e = res.estimates.assign(eta_true=eta, spam=spam, seed=seed)
                rows.append(e)
    return pd.concat(rows, ignore_index=True)


def sweep_table(est: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for (eta, spam), g in est.groupby(["eta_true", "spam"], sort=True):
        s = scores(g)
        parts.append(s.assign(eta=eta, spam=spam))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------------
# 3. bias sources (default study)
# ------------------------------------------------------------------------------------------------
def dawid_skene(item, rater, rating, n_items, n_raters, known, strength=5.0, iters=500, tol=1e-9):
    """Two-coin Dawid-Skene EM per rater: e0 = P(yes | absent), e1 = P(no | present), shrunk towards the
    pooled rates by ``strength`` pseudo-ratings; free prevalence; items with a known answer (``known``, NaN
    elsewhere) held at it. Returns e0, e1 per rater."""
    r = rating.astype(float)
    yes = np.bincount(item, weights=r, minlength=n_items)
    tot = np.bincount(item, minlength=n_items)
    post = np.where(tot > 0, (yes + 0.5) / (tot + 1.0), 0.5)
    fixed = np.isfinite(known)
    post = np.where(fixed, np.nan_to_num(known), post)
    prev = -np.inf
    for _ in range(iters):
        p = post[item]
        pool0, pool1 = ((1 - p) * r).sum() / (1 - p).sum(), (p * (1 - r)).sum() / p.sum()
        e0 = (np.bincount(rater, weights=(1 - p) * r, minlength=n_raters) + strength * pool0) / (
            np.bincount(rater, weights=1 - p, minlength=n_raters) + strength)
        e1 = (np.bincount(rater, weights=p * (1 - r), minlength=n_raters) + strength * pool1) / (
            np.bincount(rater, weights=p, minlength=n_raters) + strength)
        e0, e1 = np.clip(e0, 1e-3, 1 - 1e-3), np.clip(e1, 1e-3, 1 - 1e-3)
        pi = np.clip(post[tot > 0].mean(), 1e-3, 1 - 1e-3)
        l1 = np.where(r == 1, np.log1p(-e1[rater]), np.log(e1[rater]))
        l0 = np.where(r == 1, np.log(e0[rater]), np.log1p(-e0[rater]))
        big1 = np.bincount(item, weights=l1, minlength=n_items) + np.log(pi)
        big0 = np.bincount(item, weights=l0, minlength=n_items) + np.log1p(-pi)
        post = np.where(fixed, np.nan_to_num(known), special.expit(big1 - big0))
        ll = np.logaddexp(big1, big0)[tot > 0].sum()
        if abs(ll - prev) < tol * abs(ll):
            break
        prev = ll
    return e0, e1


def _rater_llr(item, rater, rating, e0, e1, n_items):
    llr = np.where(rating == 1, np.log1p(-e1[rater]) - np.log(e0[rater]), np.log(e1[rater]) - np.log1p(-e0[rater]))
    return np.bincount(item, weights=llr, minlength=n_items)


def _class_means_given_raters(item, rater, e0, e1, prior, n_items):
    """E[s | c] for the per-rater posterior s, given each item's own raters: all 2^m answer patterns."""
    tot = np.bincount(item, minlength=n_items)
    order = np.argsort(item, kind="stable")
    start = np.cumsum(tot) - tot
    t1, t0 = np.full(n_items, np.nan), np.full(n_items, np.nan)
    lp = special.logit(prior)
    for m in np.unique(tot[(tot > 0) & (tot <= 12)]):
        its = np.flatnonzero(tot == m)
        raters = rater[order][start[its][:, None] + np.arange(m)]
        pat = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1).astype(float)[None]
        lp1 = (pat * np.log1p(-e1[raters])[:, None] + (1 - pat) * np.log(e1[raters])[:, None]).sum(-1)
        lp0 = (pat * np.log(e0[raters])[:, None] + (1 - pat) * np.log1p(-e0[raters])[:, None]).sum(-1)
        s = special.expit(lp[its][:, None] + lp1 - lp0)
        t1[its], t0[its] = (np.exp(lp1) * s).sum(-1), (np.exp(lp0) * s).sum(-1)
    return t1, t0


def bias_sources(study: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(calibration by decile, variant estimates, facts) on the default study's simple explanations."""
    crowd = study / "crowd"
    ex, de, it, ra, tr = (pd.read_parquet(crowd / f"{k}.parquet")
                          for k in ("explanations", "design", "items", "ratings", "truth"))
    idx = item_index(it)
    rated = dedupe_ratings(ra, idx)
    n = idx.n
    gold = it["is_gold"].fillna(False).to_numpy(bool)
    gold_answer = pd.to_numeric(it["gold_answer"], errors="coerce").to_numpy(float)
    key = pd.MultiIndex.from_frame(it[["image_id", "concept"]])
    t = tr.set_index(["image_id", "concept"])["truth"].reindex(key).to_numpy(float)
    c_item = np.where(gold, gold_answer, t)
    yes, total = item_counts(rated, n)
    prior = np.clip(it["prior"].to_numpy(float), 1e-3, 1 - 1e-3)
    eta = choose_eta(None, yes, total, gold).eta
    wrong = rated.rating != c_item[rated.item]
    per_rater = pd.Series(wrong).groupby(rated.rater).mean()
    e0, e1 = dawid_skene(rated.item, rated.rater, rated.rating, n, len(rated.raters), np.where(gold, gold_answer, np.nan))
    err_hat = pd.Series(np.r_[e0, e1]).groupby(np.r_[np.arange(len(e0)), np.arange(len(e1))]).mean()
    facts = {"eta_em": eta, "true_error_per_rating": float(wrong.mean()),
             "rater_error_min": float(per_rater.min()), "rater_error_max": float(per_rater.max()),
             "ds_vs_true_rater_error_corr": float(np.corrcoef(err_hat, per_rater.sort_index())[0, 1]),
             "prior_mean": float(prior[~gold].mean()), "prior_p10": float(np.quantile(prior[~gold], 0.1)),
             "prior_p90": float(np.quantile(prior[~gold], 0.9)), "truth_mean": float(np.nanmean(t[~gold]))}
    pres = dict(zip(("majority", "bragg_model", "bragg_debiased"),
                    soft_presence(yes, total, prior, ["majority", "bragg_model", "bragg_debiased"], eta=eta), strict=True))
    llr = _rater_llr(rated.item, rated.rater, rated.rating, e0, e1, n)
    post_rater = special.expit(special.logit(prior) + llr)
    t1, t0 = _class_means_given_raters(rated.item, rated.rater, e0, e1, prior, n)
    # linear unbiased vote: per rating (r - e0) / (1 - e0 - e1), inverse-variance weights
    d = np.clip(1 - e0 - e1, 1e-3, None)
    lam = (d**2 / (0.2 * e1 * (1 - e1) + 0.8 * e0 * (1 - e0)))[rated.rater]
    u = (rated.rating - e0[rated.rater]) / d[rated.rater]
    lin = np.bincount(rated.item, weights=lam * u, minlength=n) / np.bincount(rated.item, weights=lam, minlength=n)
    variants = {  # name: (s, second moment, what it is)
        "true presence": (t, t, "the draws scored with the truth: sampling error only"),
        "majority": (pres["majority"], pres["majority"] ** 2, "plug-in"),
        "bragg_model (c^2 = s^2)": (pres["bragg_model"], pres["bragg_model"] ** 2, "plug-in, as the paper"),
        "bragg_model (c^2 = s)": (pres["bragg_model"], pres["bragg_model"], "calibrated-posterior second moment"),
        "per-rater posterior (s^2)": (post_rater, post_rater**2, "Dawid-Skene per rater, plug-in"),
        "per-rater posterior (s)": (post_rater, post_rater, "Dawid-Skene per rater, E[c^2 | ratings] = s"),
        "bragg_debiased": (pres["bragg_debiased"], pres["bragg_debiased"], "one-coin debiasing (the default)"),
        "per-rater debiased": ((post_rater - t0) / (t1 - t0), (post_rater - t0) / (t1 - t0),
                               "unbiased given each item's raters"),
        "per-rater linear vote": (lin, lin, "unbiased weighted vote, no prior"),
    }
    concept = np.array([json.loads(x)["concept"] if isinstance(x, str) else x["concept"] for x in ex["structured"]])
    dd = _design_arrays(de, pd.Index(ex["explanation_id"].astype(str)))
    k = np.bincount(dd["expl"], minlength=len(ex))
    if not (k == k[0]).all() or (set(json.loads(x)["kind"] if isinstance(x, str) else x["kind"]
                                       for x in ex["structured"]) != {"simple"}):
        raise ValueError("--sources needs simple explanations with the same number of draws each")
    shape = (len(ex), int(k[0]))
    rows_item = idx.find(dd["image"], concept[dd["expl"]]).reshape(shape)
    a, w = dd["a_hat"].reshape(shape), dd["weight"].reshape(shape)
    exact = ex["exact_rho"].to_numpy(float)
    rows = []

    def parts(s, cc):  # per explanation: the numerator mean(w a s) and the denominator sqrt(v)
        m2 = (w * s[rows_item]).mean(axis=1)
        return (w * a * s[rows_item]).mean(axis=1), np.sqrt(np.maximum((w * cc[rows_item]).mean(axis=1) - m2**2, 0))

    num_t, den_t = parts(t, t)
    strong = exact > 0.1  # ratios to the truth's parts where the score is clearly positive
    for name, (s, cc, what) in variants.items():
        s = np.where(total > 0, s, np.nan) if name != "true presence" else s
        res = rho_interval(a, s[rows_item], w, cc_s=cc[rows_item])
        err = np.clip(res.rho_hat, -1, 1) - exact
        num, den = parts(s, cc)
        rows.append({"variant": name, "what": what, "bias": err.mean(), "rmse": np.sqrt(np.mean(err**2)),
                     "numerator / truth's": np.median(num[strong] / num_t[strong]),
                     "denominator / truth's": np.median(den[strong] / den_t[strong]),
                     "coverage": float(res.contains(exact).mean()), "mean_se": float(np.nanmean(res.se)),
                     "item_min": float(np.nanmin(s[~gold])), "item_max": float(np.nanmax(s[~gold]))})
    s, c = pres["bragg_model"][~gold], t[~gold]
    dec = np.clip(np.searchsorted(np.quantile(s, np.linspace(0, 1, 11))[1:-1], s, side="right"), 0, 9)
    calib = pd.DataFrame({"decile": dec, "mean posterior": s, "share present": c}).groupby("decile").mean()
    return calib.T, pd.DataFrame(rows), facts


def _fmt(df: pd.DataFrame, cols) -> str:
    return df[cols].to_markdown(index=False, floatfmt=".3f")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", default=str(REPO / "results" / "default"))
    ap.add_argument("--no-study", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--explanations", type=int, default=40)
    ap.add_argument("--concentration", type=float, default=10.0)
    ap.add_argument("--estimator", default="unbiased", choices=("unbiased", "self_normalised"))
    ap.add_argument("--sources", action="store_true", help="also measure where the plug-in bias comes from")
    args = ap.parse_args(argv)
    cols = ["aggregation", "n", "bias", "rmse", "median_abs_error", "coverage", "mean_se", "degenerate"]
    if not args.no_study:
        t0 = time.process_time()
        tab = default_study(Path(args.study), args.estimator)
        print(f"## default study ({args.study}; {args.estimator} estimator; EM eta = {tab.attrs['eta']:.4f}; {time.process_time() - t0:.1f} s CPU)\n")
        print(_fmt(tab, cols) + "\n")
    if args.sources:
        calib, var, facts = bias_sources(Path(args.study))
        print("## where the plug-in bias comes from (default study)\n")
        print(", ".join(f"{k} = {v:.4f}" for k, v in facts.items()) + "\n")
        print("BRAgg (model prior) posterior by decile (non-gold items):\n")
        print(calib.to_markdown(floatfmt=".3f") + "\n")
        print(var.to_markdown(index=False, floatfmt=".3f") + "\n")
    if not args.no_sweep:
        t0 = time.process_time()
        est = sweep(args.seeds, args.explanations, (0.05, 0.1, 0.2, 0.3), (0.0, 0.1, 0.2), args.concentration,
                    args.estimator)
        tab = sweep_table(est)
        print(f"## synthetic sweep ({args.estimator} estimator; {args.seeds} seeds x {args.explanations} explanations per cell; rater error "
              f"~ Beta({args.concentration:g} eta, {args.concentration:g} (1 - eta)); "
              f"{time.process_time() - t0:.0f} s CPU)\n")
        wide = tab.pivot_table(index=["eta", "spam"], columns="aggregation", values=["bias", "rmse", "coverage"])
        keep = [a for a in [*ORDER, "truth"] if a in tab["aggregation"].unique()]
        for metric in ("bias", "rmse", "coverage"):
            w = wide[metric][keep].reset_index()
            print(f"### {metric}\n\n{w.to_markdown(index=False, floatfmt='.3f')}\n")
        overall = tab.groupby("aggregation", sort=False)[["bias", "rmse", "median_abs_error", "coverage"]].agg(
            ["min", "max"])
        print("### range over the 12 cells\n\n" + overall.reindex(keep).to_markdown(floatfmt=".3f") + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
