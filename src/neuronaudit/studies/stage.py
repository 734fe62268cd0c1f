"""Pipeline glue for the method studies (SPEC sec. 5): load the probing split D from the pipeline's
files, run Setting 1 / Setting 2 of ``studies.setting1`` / ``studies.setting2``, gather, summarise.

Every function takes paths (or frames) and plain dicts of settings, so it runs the same from a
Snakemake script, a test or a notebook. The files and their columns are listed in docs/studies.md
and docs/schemas.md.

The probing set D = the manifest's ``split`` images (default ``val``) that have an activation row
(undecodable images have none). Ground truth c_t(x) comes from labels.parquet (binary, known for
every image); the guide / prior c_hat_t(x) from presence/{concept_model}/{vocabulary}.parquet
(``probability``). Concepts studied = the dataset's labelled concepts that every configured guide
scores and that have at least ``min_positives`` positives and one negative in D.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.data.datasets import labels_matrix
from neuronaudit.exclusions import MAX_NAN_FRACTION, Exclusions, finite_columns
from neuronaudit.io import read_matrix, read_table, write_csv, write_table
from neuronaudit.report.tables import mean_pm_sem
from neuronaudit.sampling import summarise_rce
from neuronaudit.studies.setting1 import (
    AUC_BINS,
    alpha_sweep,
    auc_bin_table,
    coverage_table,
    gamma_sweep,
    run_setting1,
    select_pairs,
)
from neuronaudit.studies.setting2 import run_setting2

log = logging.getLogger(__name__)

__all__ = [
    "ProbingSet",
    "load_probing_set",
    "study_pairs",
    "sampler_specs",
    "setting1_job",
    "setting2_job",
    "gather",
    "table4_auc_bins",
    "setting1_tables",
    "setting2_tables",
    "write_csv_tables",
]

SETTING2_COLUMNS = {
    "model": object,
    "layer": object,
    "neuron": object,
    "concept": object,
    "concept_model": object,
    "sampler": object,
    "n": "int64",
    "seed": "int64",
    "n_raters": "int64",
    "aggregation": object,
    "prior": object,
    "error_model": object,
    "beta": "float64",
    "eta_hat": "float64",
    "n_distinct": "int64",
    "cost": "float64",
    "rho": "float64",
    "rho_hat": "float64",
    "rce": "float64",
    "pair": "int64",
    "no_variation": bool,
    "kind": object,
}
PAIR_COLUMNS = ["pair_id", "model", "layer", "neuron", "concept", "rho", "kind", "setting2"]


@dataclass
class ProbingSet:
    """D for one (model, layer): activations (N, K), ground truth (N, T), guides name -> (N, T);
    ``excluded``: the images, neurons and concepts left out and why (exclusions.Exclusions)."""

    image_ids: np.ndarray
    acts: np.ndarray
    neurons: list[str]
    y: np.ndarray
    concepts: list[str]
    guides: dict[str, np.ndarray]
    excluded: Exclusions = field(default_factory=lambda: Exclusions("probing set"))


def _split_ids(manifest: str | pd.DataFrame, split: str) -> pd.Index:
    m = (
        read_table(manifest, columns=["image_id", "split"])
        if not isinstance(manifest, pd.DataFrame)
        else manifest
    )
    ids = pd.Index(m.loc[m["split"] == split, "image_id"].astype(str))
    if ids.empty:
        raise ValueError(f"the manifest has no images in split {split!r}")
    return ids


def load_probing_set(
    manifest: str | pd.DataFrame,
    labels: str | pd.DataFrame,
    activations: str,
    presence: Mapping[str, str],
    split: str = "val",
    min_positives: int = 5,
    max_nan_fraction: float = MAX_NAN_FRACTION,
) -> ProbingSet:
    """Align activations, ground-truth labels and each guide's presence on D (module docstring).

    Left out, never silently (``ProbingSet.excluded``, logged): neurons that are all NaN, NaN on more
    than ``max_nan_fraction`` of D, or constant on D (no correlation to estimate); images with no
    finite activation; concepts a guide does not score, with fewer than ``min_positives`` positives
    or no negative in D, and concepts whose guide column is all NaN (or mostly NaN) or zero on every
    image (MG-IS's q_model would be 0 / 0). Remaining guide cells that are missing or not finite (an
    image the concept model could not decode) are set to 0: MG-IS mixes in gamma * p, so q stays
    positive there; the count is logged.
    """
    split_ids = _split_ids(manifest, split)
    act = read_matrix(activations, ["activation"])
    act_ids = pd.Index(act.image_ids.astype(str))
    keep = act_ids.isin(split_ids)
    ids = act_ids[keep]
    if ids.empty:
        raise ValueError(f"{activations}: no activation rows for split {split!r}")
    acts = np.asarray(act["activation"][keep], dtype=np.float64)
    neurons = [str(c) for c in (act.columns or range(acts.shape[1]))]
    excl = Exclusions(f"probing set {split} of {activations}", log)
    rows_ok, neuron_ok = finite_columns(acts, neurons, list(ids), excl, col_item="neuron", what="activation",
                                        max_nan_fraction=max_nan_fraction, drop_constant=True)
    if not neuron_ok.any():
        raise ValueError(f"{activations}: no neuron with finite, varying activations on {split!r} "
                         f"({excl.summary()})")
    ids, acts = ids[rows_ok], acts[rows_ok][:, neuron_ok]
    neurons = [n for n, k in zip(neurons, neuron_ok, strict=True) if k]

    lab = read_table(labels) if not isinstance(labels, pd.DataFrame) else labels
    lab = lab[lab["image_id"].astype(str).isin(ids)]
    concepts = list(dict.fromkeys(lab["concept"].astype(str)))
    guide_mats = {}
    for name, path in presence.items():
        mat = read_matrix(path, ["probability"])
        cols = [str(c) for c in (mat.columns or [])]
        have = set(cols)
        excl.add("concept", [c for c in concepts if c not in have], f"not scored by the guide {name}")
        concepts = [c for c in concepts if c in have]
        guide_mats[name] = (mat, cols)
    y, concepts = labels_matrix(lab, list(ids), concepts)
    pos = y.sum(axis=0)
    names = np.asarray(concepts, dtype=object)
    excl.add("concept", names[pos == 0], "no positive image in D", logging.INFO)
    excl.add("concept", names[(pos > 0) & (pos < min_positives)],
             f"fewer than min_positives = {min_positives} positive images in D", logging.INFO)
    excl.add("concept", names[(pos >= min_positives) & (pos == len(ids))], "no negative image in D", logging.INFO)
    usable = (pos >= min_positives) & (pos < len(ids))

    raw = {}
    for name, (mat, cols) in guide_mats.items():
        pos_of = pd.Index(mat.image_ids.astype(str)).get_indexer(ids)
        col_of = pd.Index(cols).get_indexer(concepts)
        g = np.full((len(ids), len(concepts)), np.nan)
        have = pos_of >= 0
        g[have] = mat["probability"][pos_of[have]][:, col_of]
        # a guide column that is (mostly) NaN or 0 everywhere cannot guide MG-IS: leave the concept out
        nan_frac = 1.0 - np.isfinite(g[have]).mean(axis=0) if have.any() else np.ones(len(concepts))
        all_nan = usable & (nan_frac >= 1.0)
        excl.add("concept", names[all_nan], f"guide {name}: all NaN")
        mostly = usable & ~all_nan & (nan_frac > max_nan_fraction)
        excl.add("concept", names[mostly], f"guide {name}: NaN on more than {max_nan_fraction:g} of D")
        usable &= ~(all_nan | mostly)
        zero = usable & ~(np.nan_to_num(g, nan=0.0) > 0).any(axis=0)
        excl.add("concept", names[zero], f"guide {name}: probability 0 on every image of D (MG-IS undefined)")
        usable &= ~zero
        raw[name] = (g, have)
    y, concepts = y[:, usable], [c for c, u in zip(concepts, usable, strict=True) if u]
    log.info("probing set %s: %d images, %d of %d neurons, %d concepts kept; left out: %s", split, len(ids),
             len(neurons), len(neuron_ok), len(concepts), excl.summary() or "nothing")
    if not concepts:
        raise ValueError(
            f"no concept has >= {min_positives} positives and a negative in D ({len(ids)} images) and a usable "
            f"guide; left out: {excl.summary()}"
        )

    guides = {}
    for name, (g, have) in raw.items():
        g = g[:, usable]
        bad = ~np.isfinite(g)
        n_bad_rows = int(bad.any(axis=1).sum())
        if n_bad_rows:
            log.warning(
                "guide %s: %d of %d images without a finite presence row (%d not in the file); set to 0",
                name,
                n_bad_rows,
                len(ids),
                int((~have).sum()),
            )
        g[bad] = 0.0
        guides[name] = np.clip(g, 0.0, 1.0)
    return ProbingSet(np.asarray(ids), acts, neurons, y, concepts, guides, excl)


def _layer_rng(seed: int, model: str, layer: str) -> np.random.Generator:
    """A random stream per (seed, model, layer) that does not depend on which other layers are studied."""
    return np.random.default_rng([seed, zlib.crc32(f"{model}/{layer}".encode())])


def layer_pairs(
    ps: ProbingSet,
    model: str,
    layer: str,
    *,
    n_random_pairs: int = 0,
    neurons_per_layer: int | None = None,
    setting2_pairs: int = 0,
    floor: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Pairs of one layer: each (sampled) neuron's best concept + random pairs (setting1.select_pairs).

    Constant neurons on D are left out. ``neurons_per_layer`` keeps a fixed random subset of the
    others (None = all). ``setting2`` marks a
    fixed random subset of ``setting2_pairs`` pairs with |rho| >= floor for Setting 2.
    """
    rng = _layer_rng(seed, model, layer)
    varying = np.flatnonzero(ps.acts.std(axis=0) > 0)  # a constant neuron has no correlation to estimate
    if len(varying) < ps.acts.shape[1]:
        log.info("%s/%s: %d constant neuron(s) on D left out", model, layer, ps.acts.shape[1] - len(varying))
    cols = varying
    if neurons_per_layer is not None and neurons_per_layer < len(varying):
        cols = np.sort(rng.choice(varying, size=neurons_per_layer, replace=False))
    pairs = select_pairs(
        ps.acts[:, cols],
        ps.y,
        n_random=n_random_pairs,
        seed=int(rng.integers(2**31)),
        neuron_names=[ps.neurons[i] for i in cols],
        concept_names=ps.concepts,
    )
    no_pair = np.setdiff1d(np.arange(len(cols)), pairs.loc[pairs["kind"] == "best", "neuron_idx"].to_numpy())
    ps.excluded.add("neuron", [ps.neurons[cols[i]] for i in no_pair], "no concept with a finite correlation on D")
    pairs.insert(0, "layer", layer)
    pairs.insert(0, "model", model)
    eligible = np.flatnonzero(pairs["rho"].abs().to_numpy() >= floor)
    chosen = rng.choice(eligible, size=min(setting2_pairs, len(eligible)), replace=False)
    pairs["setting2"] = np.isin(np.arange(len(pairs)), chosen)
    return pairs


def study_pairs(
    manifest: str,
    labels: str,
    activations: Mapping[tuple[str, str], str],
    presence: Mapping[str, str],
    *,
    split: str = "val",
    min_positives: int = 5,
    exclusions: Exclusions | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """pairs.parquet: ``layer_pairs`` for every target (model, layer), with a global ``pair_id``.

    ``exclusions`` collects what each layer's probing set left out (for the sidecar of pairs.parquet).
    """
    lab = read_table(labels)
    man = read_table(manifest, columns=["image_id", "split"])
    frames = []
    for (model, layer), path in activations.items():
        ps = load_probing_set(man, lab, path, presence, split=split, min_positives=min_positives)
        p = layer_pairs(ps, model, layer, **kwargs)
        if exclusions is not None:
            exclusions.extend(ps.excluded)
        log.info(
            "%s/%s: %d neurons, %d concepts, %d pairs (%d best, %d random, %d for Setting 2)",
            model,
            layer,
            ps.acts.shape[1],
            len(ps.concepts),
            len(p),
            (p["kind"] == "best").sum(),
            (p["kind"] == "random").sum(),
            p["setting2"].sum(),
        )
        frames.append(p)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "pair_id", np.arange(len(out)))
    out["neuron"] = out["neuron"].astype(str)
    return out[PAIR_COLUMNS]


def _pairs_for(
    ps: ProbingSet, pairs: pd.DataFrame, model: str, layer: str, setting2: bool = False
) -> pd.DataFrame:
    p = pairs[(pairs["model"] == model) & (pairs["layer"] == layer)]
    if setting2:
        p = p[p["setting2"]]
    p = p.reset_index(drop=True).copy()
    p["neuron_idx"] = pd.Index(ps.neurons).get_indexer(p["neuron"].astype(str))
    p["concept_idx"] = pd.Index(ps.concepts).get_indexer(p["concept"].astype(str))
    missing = p[(p["neuron_idx"] < 0) | (p["concept_idx"] < 0)]
    if len(missing):
        raise KeyError(
            f"{model}/{layer}: {len(missing)} pair(s) name neurons or concepts not in D, e.g. "
            f"{missing[['neuron', 'concept']].head(3).to_dict('records')}"
        )
    return p


def sampler_specs(names: Sequence[str], gamma: float = 0.2, alpha: float = 2.0) -> list[dict]:
    """Config sampler names -> sampling specs, labelled by name (gamma / alpha are the config's)."""
    params = {"uniform": {}, "mg_is": {"gamma": gamma}, "ag_is": {"alpha": alpha, "gamma": gamma}}
    unknown = set(names) - set(params)
    if unknown:
        raise ValueError(f"unknown sampler(s) {sorted(unknown)}; expected {sorted(params)}")
    return [{"name": n, **params[n], "label": n} for n in names]


def _finish(df: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Replace the per-job pair index with the global pair_id (so pairs stay distinct when gathered)."""
    df = df.copy()
    df["pair"] = pairs["pair_id"].to_numpy()[df["pair"].to_numpy()]
    df["neuron"] = df["neuron"].astype(str)
    df["kind"] = df["pair"].map(dict(zip(pairs["pair_id"], pairs["kind"], strict=True)))
    return df


def setting1_job(
    ps: ProbingSet,
    pairs: pd.DataFrame,
    model: str,
    layer: str,
    concept_model: str,
    settings: Mapping[str, Any],
    study: str = "main",
    n_threads: int | None = None,
) -> pd.DataFrame:
    """One (model, layer, guide) job of Setting 1. study: 'main' (samplers x ns x seeds), 'gamma'
    (MG-IS gamma sweep) or 'alpha' (AG-IS alpha sweep with uniform and MG-IS for reference)."""
    p = _pairs_for(ps, pairs, model, layer)
    if p.empty:
        raise ValueError(f"{model}/{layer}: no pairs to study (every neuron constant on D?)")
    s = dict(settings)
    common = dict(
        model=model,
        layer=layer,
        concept_model=concept_model,
        estimator=s.get("estimator", "unbiased"),
        rng=int(s.get("rng", 0)),
        n_threads=n_threads,
    )
    guide = ps.guides[concept_model]
    if study == "main":
        df = run_setting1(
            ps.acts,
            ps.y,
            guide,
            p,
            samplers=sampler_specs(s["samplers"], s["gamma"], s["alpha"]),
            ns=s["ns"],
            seeds=range(s["seeds"]),
            **common,
        )
    else:
        ns = s.get("sweep_ns") or s["ns"]
        seeds = range(s.get("sweep_seeds") or s["seeds"])
        if study == "gamma":
            df = gamma_sweep(ps.acts, ps.y, guide, p, gammas=s["gammas"], ns=ns, seeds=seeds, **common)
        elif study == "alpha":
            df = alpha_sweep(
                ps.acts, ps.y, guide, p, alphas=s["alphas"], gamma=s["gamma"], ns=ns, seeds=seeds, **common
            )
        else:
            raise ValueError(f"study must be 'main', 'gamma' or 'alpha', got {study!r}")
    return _finish(df, p)


def setting2_job(
    ps: ProbingSet,
    pairs: pd.DataFrame,
    model: str,
    layer: str,
    concept_model: str,
    settings: Mapping[str, Any],
) -> pd.DataFrame:
    """One (model, layer, prior) job of Setting 2 on the pairs marked ``setting2`` (MG-IS guided by and
    BRAgg model prior from the same concept model)."""
    p = _pairs_for(ps, pairs, model, layer, setting2=True)
    s = dict(settings)
    if p.empty:
        log.warning("%s/%s: no Setting 2 pairs; writing an empty table", model, layer)
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SETTING2_COLUMNS.items()})
    df = run_setting2(
        ps.acts,
        ps.y,
        ps.guides[concept_model],
        p,
        model=model,
        layer=layer,
        concept_model=concept_model,
        ns=s["ns"],
        seeds=range(s["seeds"]),
        n_raters=s["n_raters"],
        rater_model=s["rater_model"],
        eta_true=s["rater_eta"],
        betas=sorted(set(s["betas"]) | {s["beta"]}),
        eta=s.get("eta"),
        eta_single_rater=s["eta_single_rater"],
        gamma=s["gamma"],
        estimator=s.get("estimator", "unbiased"),
        rng=int(s.get("rng", 0)),
    )
    return _finish(df, p)


def gather(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate per-job tables (their categorical-free columns line up by construction)."""
    frames = [read_table(p) for p in paths]
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True)


# ---- summaries (mean ± SEM over pairs after averaging seeds; |rho| < floor excluded) ----------------


def _text(out: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    out["mean_pm_sem"] = [
        mean_pm_sem(m, s, digits, missing="") for m, s in zip(out["rce"], out["sem"], strict=True)
    ]
    return out


def _summarise(df: pd.DataFrame, by: Sequence[str], floor: float, extra: Sequence[str] = ()) -> pd.DataFrame:
    """RCE mean ± SEM per group (:func:`neuronaudit.sampling.summarise_rce`), with its mean_pm_sem column."""
    return _text(summarise_rce(df, floor, by, extra))


def _nearest(values: Sequence[int], target: int) -> int:
    values = sorted(set(int(v) for v in values))
    return min(values, key=lambda v: (abs(v - target), v))


def table4_auc_bins(
    df: pd.DataFrame,
    n: int = 180,
    floor: float = 0.05,
    bins: Sequence[float] = AUC_BINS,
    samplers: Sequence[str] = ("uniform", "mg_is"),
) -> pd.DataFrame:
    """Table 4 analogue: RCE at n (nearest available) by the guide's AUC bin, per guide and sampler.

    Every bin is listed, with n_pairs = 0 where no pair's concept falls in it. Columns concept_model,
    auc_bin, sampler, n, rce, sem, n_pairs, n_excluded, mean_n_distinct, text.
    """
    n = _nearest(df["n"].unique(), n)
    labels = [f"{lo:g}-{hi:g}" for lo, hi in zip(bins[:-1], bins[1:], strict=True)]
    frames = []
    for cm, sub in df[df["sampler"].isin(samplers)].groupby("concept_model", sort=True):
        t = auc_bin_table(sub, n=n, bins=bins, floor=floor)
        full = pd.MultiIndex.from_product([list(samplers), labels], names=["sampler", "auc_bin"]).to_frame(
            index=False
        )
        t["auc_bin"] = t["auc_bin"].astype(str)
        t = full.merge(t, on=["sampler", "auc_bin"], how="left")
        counts = [c for c in ("n_pairs", "n_excluded", "n_no_variation") if c in t]
        t[counts] = t[counts].fillna(0).astype(int)
        t.insert(0, "concept_model", cm)
        t.insert(3, "n", n)
        frames.append(t)
    out = pd.concat(frames, ignore_index=True)
    return _text(
        out[
            [
                "concept_model",
                "auc_bin",
                "sampler",
                "n",
                "rce",
                "sem",
                "n_pairs",
                "n_excluded",
                "mean_n_distinct",
                *[c for c in ("n_no_variation", "share_no_variation") if c in out],
            ]
        ]
    )


def setting1_tables(
    rce: pd.DataFrame, gamma: pd.DataFrame, alpha: pd.DataFrame, floor: float = 0.05, table_n: int = 180
) -> dict[str, pd.DataFrame]:
    """table4_auc_bins, setting1_rce (guide x sampler x n), setting1_coverage (the share of 95% intervals
    containing the exact rho, guide x sampler x n; ``setting1.coverage_table``), gamma_sweep, alpha_sweep."""
    return {
        "table4_auc_bins": table4_auc_bins(rce, n=table_n, floor=floor),
        "setting1_rce": _summarise(rce, ["concept_model", "sampler", "n"], floor),
        "setting1_coverage": coverage_table(rce, ["concept_model", "sampler", "n"]),
        "gamma_sweep": _summarise(gamma, ["concept_model", "gamma", "n"], floor),
        "alpha_sweep": _summarise(
            alpha.assign(alpha=alpha["alpha"].fillna(-1.0)), ["concept_model", "sampler", "alpha", "n"], floor
        ).replace({"alpha": {-1.0: np.nan}}),
    }


def setting2_tables(df: pd.DataFrame, beta: float = 0.05, floor: float = 0.05) -> dict[str, pd.DataFrame]:
    """Setting 2 summaries (SPEC sec. 5; seed 001 Figs. 6, 8, 10, 11, 13), error = RCE, cost in $.

    - setting2_cost: error vs cost for each n_raters (BRAgg with the design beta and majority), Fig. 6
    - setting2_beta: BRAgg uniform prior for every beta, both error models, Fig. 8
    - setting2_error_model: uniform vs per-input error model, uniform (beta) and model prior, Fig. 10
    - setting2_prior: model-only vs hybrid (BRAgg model prior) vs human (BRAgg beta) vs majority,
      per prior concept model, Figs. 11 and 13
    """
    at_beta = df["beta"].isna() | np.isclose(df["beta"].fillna(-1), beta)
    design = df[at_beta]
    uniform_em = design["error_model"].isin(["uniform", ""])
    names = {
        "model_only": "model-only",
        "bragg_model": "hybrid",
        "bragg_uniform": "human",
        "majority": "majority",
    }
    prior = design[design["aggregation"].isin(list(names))].assign(role=lambda d: d["aggregation"].map(names))
    em = design[design["aggregation"].str.startswith("bragg")]
    return {
        "setting2_cost": _summarise(
            design[uniform_em], ["concept_model", "aggregation", "n_raters", "n"], floor, ["cost"]
        ),
        "setting2_beta": _summarise(
            df[df["beta"].notna()], ["concept_model", "error_model", "beta", "n_raters", "n"], floor, ["cost"]
        ),
        "setting2_error_model": _summarise(
            em, ["concept_model", "prior", "error_model", "n_raters", "n"], floor, ["cost"]
        ),
        "setting2_prior": _summarise(
            prior, ["concept_model", "role", "aggregation", "n_raters", "n"], floor, ["cost"]
        ),
    }


def write_csv_tables(tables: Mapping[str, pd.DataFrame], paths: Mapping[str, str], digits: int = 6) -> None:
    for name, path in paths.items():
        write_csv(tables[name].round(digits), path)


def write_study_table(df: pd.DataFrame, path: str, meta: dict[str, Any] | None = None,
                      excluded: Exclusions | None = None) -> None:
    """Write a study table; with ``excluded``, also its ``<stem>.excluded.parquet`` sidecar and the
    ``excluded`` summary in the metadata."""
    if excluded is not None:
        meta = {**(meta or {}), "excluded": excluded.summary()}
    write_table(df.reset_index(drop=True), path, meta=meta)
    if excluded is not None:
        excluded.write(path)
