"""Tables in the paper's layout (SPEC sec. 5), built from the long-format tables the stages write.

The long tables (``results/{study}/tables/*.csv``) keep one row per group with numeric columns; the
functions here turn them into what the paper prints: rows = methods or samplers, columns = models /
layers or AUC bins, text cells "mean ± SEM" rounded for reading (3 decimals for correlations and RCE,
2 significant digits for runtimes), the number of neurons / pairs / classes behind each column in its
header, and the paper's own number beside ours where SPEC quotes one (:mod:`neuronaudit.report.paper`).
Nothing here reads or writes files; :func:`to_markdown` renders any of them as a Markdown table. The
cells use :func:`neuronaudit.report.tables.mean_pm_sem`, the format the long tables use; this module is
apart from it so that the study stages, which import that one function, do not rerun when the paper
layout changes (their ``code`` hash covers what they import; docs/caching.md).

* :func:`scores_table` — Tables 1 and 2 (automated correlation scores);
* :func:`auc_bins_table` — Table 4 (RCE by the guide's AUC, uniform vs MG-IS, with the paper's rows);
* :func:`downstream_table` — Table 5 (AUC of the neuron picked per class);
* :func:`runtime_table` — Tables 8 and 9 (seconds per method and layer);
* :func:`to_markdown` — a pipe table with a title and notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from neuronaudit.report.paper import PAPER_TABLE4, paper_score
from neuronaudit.report.tables import mean_pm_sem

__all__ = [
    "significant",
    "scores_table",
    "auc_bins_table",
    "downstream_table",
    "runtime_table",
    "to_markdown",
    "paper_table",
    "PAPER_TABLES",
    "AUC_BINS",
]

AUC_BINS = ["0-0.6", "0.6-0.8", "0.8-0.95", "0.95-0.99", "0.99-1"]
SAMPLER_NAMES = {"uniform": "Uniform", "mg_is": "MG-IS", "ag_is": "AG-IS"}


def significant(x: float, digits: int = 2, missing: str = "n/a") -> str:
    """``x`` rounded to ``digits`` significant digits in plain notation: 0.0046, 0.32, 4.1, 1200."""
    if x is None or not math.isfinite(float(x)):
        return missing
    if x == 0:
        return "0"
    rounded = float(f"{float(x):.{digits}g}")
    return np.format_float_positional(rounded, trim="-")


def _need(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what}: the long table lacks the columns {missing} (it has {list(table.columns)}); "
            "rebuild it with the current pipeline"
        )


def _layer(model: str, layer: str) -> str:
    return f"{model}/{layer}"


def scores_table(long: pd.DataFrame, digits: int = 3, concept_models: Sequence[str] | None = None) -> pd.DataFrame:
    """Tables 1-2: rows = explanation methods, one column per (model/layer, scoring concept model)
    with "mean ± SEM" over the neurons scored by every method (``n_common`` in the header), then the
    paper's mean for the matching method on ResNet-50 layer4 and ViT-B/16 layer 11 ("" if none).

    Input: ``tables/table1_automated.csv`` or ``table2_complex.csv`` (columns model, layer, method,
    concept_model, mean, sem, n_common)."""
    _need(long, ["model", "layer", "method", "concept_model", "mean", "sem", "n_common"], "scores_table")
    if concept_models is not None:
        long = long[long["concept_model"].isin(list(concept_models))]
    methods = list(dict.fromkeys(sorted(long["method"])))
    out = pd.DataFrame({"method": methods})
    for (model, layer, cm), g in long.groupby(["model", "layer", "concept_model"], sort=True):
        n = int(g["n_common"].max())
        col = f"{_layer(model, layer)} · {cm} (n={n})"
        cells = {m: mean_pm_sem(r["mean"], r["sem"], digits) for m, r in g.set_index("method").iterrows()}
        out[col] = [cells.get(m, "n/a") for m in methods]
    for arch, col in (("rn50", "paper RN50 layer4"), ("vit", "paper ViT-B/16 layer11")):
        out[col] = [paper_score(m, arch) for m in methods]
    return out


def auc_bins_table(long: pd.DataFrame, digits: int = 3, with_paper: bool = True) -> pd.DataFrame:
    """Table 4: rows = (guide, sampler), columns = the guide's AUC bins, cells "RCE ± SEM" at
    n = table_n; a row ``pairs`` per guide (pairs behind each bin, "no pairs" when empty), a row
    ``uniform / MG-IS`` (how many times lower MG-IS's RCE is), and the paper's two rows.

    Input: ``tables/table4_auc_bins.csv`` (concept_model, auc_bin, sampler, n, rce, sem, n_pairs)."""
    _need(long, ["concept_model", "auc_bin", "sampler", "n", "rce", "sem", "n_pairs"], "auc_bins_table")
    bins = [b for b in AUC_BINS if b in set(long["auc_bin"])] + sorted(set(long["auc_bin"]) - set(AUC_BINS))
    rows = []
    for guide, g in long.groupby("concept_model", sort=True):
        n = int(g["n"].iloc[0])
        by = {(r.sampler, r.auc_bin): r for r in g.itertuples()}
        pairs = {b: int(by[(s, b)].n_pairs) for (s, b) in by}
        rows.append({"guide": guide, "sampler": "pairs", "n": n,
                     **{b: (str(pairs[b]) if pairs.get(b, 0) > 0 else "no pairs") for b in bins}})
        for sampler in ("uniform", "mg_is"):
            cells = {}
            for b in bins:
                r = by.get((sampler, b))
                cells[b] = "no pairs" if r is None or not r.n_pairs else mean_pm_sem(r.rce, r.sem, digits)
            rows.append({"guide": guide, "sampler": SAMPLER_NAMES[sampler], "n": n, **cells})
        ratio = {}
        for b in bins:
            u, m = by.get(("uniform", b)), by.get(("mg_is", b))
            ok = u is not None and m is not None and u.n_pairs and m.rce > 0
            ratio[b] = f"{u.rce / m.rce:.1f}x" if ok else "no pairs"
        rows.append({"guide": guide, "sampler": "uniform / MG-IS", "n": n, **ratio})
    if with_paper:
        for sampler, values in PAPER_TABLE4.items():
            rows.append({"guide": "paper (SigLIP, ImageNet)", "sampler": sampler, "n": 180,
                         **{b: f"{v:.3f}" for b, v in zip(AUC_BINS, values, strict=True) if b in bins}})
        u, m = PAPER_TABLE4["Uniform"], PAPER_TABLE4["MG-IS"]
        rows.append({"guide": "paper (SigLIP, ImageNet)", "sampler": "uniform / MG-IS", "n": 180,
                     **{b: f"{a / c:.1f}x" for b, a, c in zip(AUC_BINS, u, m, strict=True) if b in bins}})
    return pd.DataFrame(rows, columns=["guide", "sampler", "n", *bins])


def downstream_table(long: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Table 5: rows = methods, one column per model/layer, "mean AUC ± SEM" over the unseen
    dataset's classes (classes used in the header). Input: ``tables/table5_downstream.csv``."""
    _need(long, ["model", "layer", "method", "mean_auc", "sem", "n_classes_used"], "downstream_table")
    methods = sorted(set(long["method"]))
    out = pd.DataFrame({"method": methods})
    for (model, layer), g in long.groupby(["model", "layer"], sort=True):
        col = f"{_layer(model, layer)} (classes={int(g['n_classes_used'].max())})"
        cells = {r.method: mean_pm_sem(r.mean_auc, r.sem, digits) for r in g.itertuples()}
        out[col] = [cells.get(m, "n/a") for m in methods]
    return out


def runtime_table(long: pd.DataFrame, column: str = "seconds_total", digits: int = 2) -> pd.DataFrame:
    """Tables 8-9: rows = methods, one column per model/layer (neurons and device in the header),
    seconds in ``digits`` significant digits. ``column``: ``seconds_total`` (Table 8: the method and
    the concept presence it reads) or ``seconds`` (Table 9: the method alone).
    Input: ``tables/runtime.csv``."""
    _need(long, ["model", "layer", "method", "n_neurons", "device", column], "runtime_table")
    methods = sorted(set(long["method"]))
    out = pd.DataFrame({"method": methods})
    for (model, layer), g in long.groupby(["model", "layer"], sort=True):
        devices = "/".join(sorted(set(g["device"].astype(str))))
        col = f"{_layer(model, layer)} ({int(g['n_neurons'].max())} neurons, {devices}) [s]"
        cells = {r.method: significant(getattr(r, column), digits) for r in g.itertuples()}
        out[col] = [cells.get(m, "n/a") for m in methods]
    return out


def _md_cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, title: str = "", notes: Sequence[str] = ()) -> str:
    """A GitHub pipe table, preceded by ``title`` (a heading) and followed by ``notes`` (lines)."""
    head = "| " + " | ".join(_md_cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    parts = ([f"## {title}", ""] if title else []) + [head, rule, *body]
    if notes:
        parts += ["", *notes]
    return "\n".join(parts) + "\n"


# paper table -> (title, notes under it)
PAPER_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "table1": ("Table 1 - automated correlation scores of simple explanations", (
        "Cells: mean ± SEM of the correlation score over the neurons every method scored (n in the header), "
        "on the test split, per (model/layer, scoring concept model).",
        "paper: ResNet-50 layer4 and ViT-B/16 layer 11 MLP, SigLIP scorer, ImageNet (SPEC sec. 2).")),
    "table2": ("Table 2 - automated correlation scores of complex explanations", (
        "Cells: mean ± SEM over the neurons every method scored (n in the header), test split.",
        "paper: ResNet-50 layer4, SigLIP scorer, ImageNet (seed 001 Table 2).")),
    "table4": ("Table 4 - RCE at n = table_n by the guide's AUC for the concept, uniform vs MG-IS", (
        "Cells: RCE averaged over seeds per pair, mean ± SEM over pairs (pairs with |rho| < floor excluded); "
        "'pairs' rows give the pairs per bin; 'uniform / MG-IS' how many times lower MG-IS's RCE is.",
        "paper rows: SigLIP guide on ImageNet, n = 180 (seed 001 Table 4).")),
    "table5": ("Table 5 - downstream: AUC of the neuron picked per unseen class", (
        "Cells: mean ± SEM over the classes used (in the header) of the AUC, as a classifier of the class, "
        "of the neuron whose explanation is closest to the class name.",)),
    "table8": ("Table 8 - runtime per method and layer, seconds (method + the concept presence it reads)", (
        "Wall seconds, 2 significant digits, on the device in the header (SPEC sec. 5: Tables 8-9).",)),
    "table9": ("Table 9 - runtime of the method alone, seconds (concept presence excluded)", (
        "Wall seconds, 2 significant digits, on the device in the header.",)),
}


def paper_table(name: str, long: pd.DataFrame, settings: dict | None = None) -> tuple[pd.DataFrame, str]:
    """Paper table ``name`` (:data:`PAPER_TABLES`) from its long table: the DataFrame and its Markdown.
    ``settings``: ``digits`` (correlations / RCE, default 3), ``runtime_digits`` (2), ``table_scorers``."""
    s = {"digits": 3, "runtime_digits": 2, "table_scorers": None, **(settings or {})}
    if name in ("table1", "table2"):
        table = scores_table(long, s["digits"], s["table_scorers"])
    elif name == "table4":
        table = auc_bins_table(long, s["digits"])
    elif name == "table5":
        table = downstream_table(long, s["digits"])
    elif name in ("table8", "table9"):
        table = runtime_table(long, "seconds_total" if name == "table8" else "seconds", s["runtime_digits"])
    else:
        raise ValueError(f"unknown paper table {name!r}; known: {sorted(PAPER_TABLES)}")
    title, notes = PAPER_TABLES[name]
    return table, to_markdown(table, title, notes)
