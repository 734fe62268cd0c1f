"""Our numbers beside the papers' (issue 11, item 4): ``tables/paper_comparison.{csv,md}``.

The papers' numbers, where SPEC quotes them and what they measure, live in the data file
``paper_values.yaml`` beside this module (``load_paper_values``); this module only reads a study's
tables and sets its value beside each. One row per (paper value, our variant): a paper value read
from a table with several guides or layers gets one row per guide / layer (``each`` in the file); a
value the study does not produce gets one row with ``ours`` empty and the reason.

Columns (``COLUMNS``): id, source (the paper's table / figure / section), spec (where SPEC quotes it),
quantity, setting (the paper's), paper_value, ours_setting (the study, dataset and the variant:
guide, model/layer, method), ours, difference (ours - paper, or ours / paper for ``compare: ratio``;
empty for qualitative claims), difference_kind ("ours - paper" / "ours / paper" / ""), comparable
("yes" / "no"), reason (why not comparable: each way the setting differs, e.g. "Fashion-MNIST vs
ImageNet"; "needs paper.yaml run" where the paper's setting is ImageNet; why ours is missing), quote.

How ours is read (``ours: {kind: ...}`` in the file; ``EXTRACTORS``):
  lookup            one value: rows of ``table`` matching ``where`` (a value or a list of allowed
                    values per column) and not ``where_not``, one per combination of the ``each``
                    columns, ``column``
  ratio             numerator / denominator, two lookups expanded the same way
  argmin            the ``pick`` column's value at the row with the lowest ``column``
  equal_error_ratio Fig. 9's input ratio (report.curves.equal_error_ratio), MG-IS vs uniform
  json              a key of a JSON file (crowd/cost.json), optionally divided by ``divide_by``
  crowd_cell        a mean ± SEM cell of tables/crowd_table3.csv: row ``method``, column
                    "<model>/<layer>: <aggregation>"
  calibration       the (a, b) of each concept model's calibration in concept_models/<name>.json
  gain_over_best    ``column`` of the target method minus the best other method's, per ``each`` group
                    (target ``method: line_methods``: the study's explain methods with ``method: line``)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from neuronaudit.report.curves import equal_error_ratio

__all__ = [
    "COLUMNS",
    "REQUIRED_FIELDS",
    "EXTRACTORS",
    "load_paper_values",
    "study_descriptor",
    "compare",
    "to_markdown",
]

COLUMNS = ["id", "source", "spec", "quantity", "setting", "paper_value", "ours_setting", "ours", "difference",
           "difference_kind", "comparable", "reason", "quote"]
REQUIRED_FIELDS = ("id", "source", "spec", "quote", "quantity", "setting", "paper_value", "compare", "requires", "ours")
OPTIONAL_FIELDS = ("reason",)
REQUIREMENTS = ("imagenet", "places365", "resnet50_layer4", "vit_b16_layer11", "siglip", "real_raters", "line_backends")
NEEDS_PAPER_RUN = "needs paper.yaml run (snakemake --configfile config/paper.yaml) for the like-for-like number"


def load_paper_values(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The entries of paper_values.yaml (or ``path``), checked: every field present, ids unique,
    ``compare`` and ``requires`` known, ``ours.kind`` an extractor. Errors name the entry."""
    if path is None:
        text = resources.files("neuronaudit.report").joinpath("paper_values.yaml").read_text(encoding="utf-8")
        where = "neuronaudit/report/paper_values.yaml"
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    entries = yaml.safe_load(text)
    if not isinstance(entries, list):
        raise ValueError(f"{where}: expected a list of entries")
    seen: set[str] = set()
    for k, e in enumerate(entries):
        name = f"{where} entry {k} ({e.get('id', '?') if isinstance(e, dict) else '?'})"
        if not isinstance(e, dict):
            raise ValueError(f"{name}: not a mapping")
        missing = [f for f in REQUIRED_FIELDS if f not in e]
        if missing:
            raise ValueError(f"{name}: missing fields {missing}")
        unknown_fields = set(e) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)
        if unknown_fields:  # e.g. an unquoted comma in a flow mapping split a value into a new key
            raise ValueError(f"{name}: unknown fields {sorted(map(str, unknown_fields))} (quote values with commas)")
        if e["id"] in seen:
            raise ValueError(f"{name}: duplicate id")
        seen.add(e["id"])
        if e["compare"] not in ("difference", "ratio", "none"):
            raise ValueError(f"{name}: compare must be difference, ratio or none, got {e['compare']!r}")
        unknown = set(e["requires"]) - set(REQUIREMENTS)
        if unknown:
            raise ValueError(f"{name}: unknown requires {sorted(unknown)}; known: {list(REQUIREMENTS)}")
        if e["compare"] != "none" and not isinstance(e["paper_value"], int | float):
            raise ValueError(f"{name}: paper_value must be a number when compare is {e['compare']!r}")
        kind = (e["ours"] or {}).get("kind")
        if kind not in EXTRACTORS:
            raise ValueError(f"{name}: ours.kind {kind!r} is not one of {sorted(EXTRACTORS)}")
    return entries


# ----------------------------------------------------------------------------------------------
# The study: what the paper's setting needs that it has or lacks
# ----------------------------------------------------------------------------------------------
def study_descriptor(config: Mapping[str, Any], crowd_simulated: bool | None = None) -> dict[str, Any]:
    """What the comparison needs to know about a study, from its (validated) config: the dataset's
    name (``imagenet`` when an image folder's root or a vocabulary says so), each model's arch and
    layer modules, each concept model's arch, whether crowd answers are simulated, the LINE backends."""
    ds = config.get("dataset", {})
    adapter = str(ds.get("adapter", ""))
    root = str(ds.get("root") or "").lower()
    dataset = adapter
    if adapter in ("imagenet",) or (adapter == "image_folder" and "imagenet" in root):
        dataset = "imagenet"
    elif adapter == "image_folder" and "places" in root:
        dataset = "places365"
    models = {name: {"arch": str(m.get("arch") or m.get("source") or name), "layers": dict(m.get("layers") or {})}
              for name, m in (config.get("models") or {}).items()}
    cms = {name: str(c.get("arch") or c.get("backend") or name) for name, c in (config.get("concept_models") or {}).items()}
    crowd = config.get("crowd") or {}
    if crowd_simulated is None:
        crowd_simulated = not crowd.get("answers")
    line_methods = {name: str((m.get("params") or {}).get("backends", "offline"))
                    for name, m in ((config.get("explain") or {}).get("methods") or {}).items()
                    if m.get("method") == "line"}
    return {"study": config.get("study", ""), "dataset": dataset, "models": models, "concept_models": cms,
            "crowd_simulated": bool(crowd_simulated), "line_methods": line_methods}


_DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "imagenet": "ImageNet", "places365": "Places365",
                  "image_folder": "an image folder"}


def _differences(requires: list[str], study: Mapping[str, Any], variant: Mapping[str, Any]) -> list[str]:
    """Each way the study (and the variant's model / layer / guide) differs from what the paper's
    number needs, in words; [] when nothing differs."""
    out = []
    ds = study["dataset"]
    model = variant.get("model")
    spec = study["models"].get(model, {}) if model else {}
    arch = spec.get("arch", "")
    module = spec.get("layers", {}).get(variant.get("layer"), variant.get("layer"))
    guide = variant.get("concept_model")
    for req in requires:
        if req in ("imagenet", "places365") and ds != req:
            out.append(f"{_DATASET_NAMES.get(ds, ds)} vs {_DATASET_NAMES[req]}")
        elif req == "resnet50_layer4":
            if model and not (arch == "resnet50" and str(module) == "layer4"):
                out.append(f"{model} ({arch}) {variant.get('layer')} vs ResNet-50 layer4")
            elif not model and not any(m["arch"] == "resnet50" for m in study["models"].values()):
                out.append("no ResNet-50 in this study")
        elif req == "vit_b16_layer11":
            if model and not (arch == "vit_b_16" and "encoder_layer_11" in str(module)):
                out.append(f"{model} ({arch}) {variant.get('layer')} vs ViT-B/16 layer 11 MLP")
            elif not model and not any(m["arch"] == "vit_b_16" for m in study["models"].values()):
                out.append("no ViT-B/16 in this study")
        elif req == "siglip":
            archs = [study["concept_models"].get(guide, guide)] if guide else list(study["concept_models"].values())
            if not any("siglip" in str(a).lower() for a in archs):
                names = guide or ", ".join(study["concept_models"])
                out.append(f"{names} ({', '.join(map(str, archs))}) vs SigLIP" if guide else f"concept models {names} vs SigLIP")
        elif req == "real_raters" and study["crowd_simulated"]:
            out.append("simulated raters vs MTurk workers")
        elif req == "line_backends":
            method = variant.get("method")
            offline = ([study["line_methods"].get(method, "offline")] if method else list(study["line_methods"].values()))
            if not any(b != "offline" for b in offline):
                out.append("offline LINE backends (MiniLM proposer, retrieval of real images) vs an LLM + text-to-image model")
    return out


# ----------------------------------------------------------------------------------------------
# Extractors: (spec, tables, files) -> [(variant dict, value)]
# ----------------------------------------------------------------------------------------------
class Missing(Exception):
    """Ours cannot be read: the reason is the message."""


def _table(tables: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    if name not in tables:
        raise Missing(f"this study does not make tables/{name}.csv")
    return tables[name]


def _select(df: pd.DataFrame, where: Mapping[str, Any] | None, name: str,
            where_not: Mapping[str, Any] | None = None) -> pd.DataFrame:
    out = df
    for col, drop in (where_not or {}).items():
        if col in out:
            dropped = drop if isinstance(drop, list) else [drop]
            out = out[~out[col].astype(str).isin([str(d) for d in dropped])]
    for col, want in (where or {}).items():
        if col not in out:
            raise KeyError(f"tables/{name}.csv has no column {col!r} (paper_values.yaml 'where')")
        allowed = want if isinstance(want, list) else [want]
        out = out[out[col].astype(str).isin([str(a) for a in allowed]) | out[col].isin(allowed)]
    if out.empty:
        raise Missing(f"no rows of tables/{name}.csv with {dict(where or {})}")
    return out


def _groups(df: pd.DataFrame, each: list[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    if not each:
        return [({}, df)]
    return [(dict(zip(each, key if isinstance(key, tuple) else (key,), strict=True)), g)
            for key, g in df.groupby(each, observed=True, sort=True)]


def _one(g: pd.DataFrame, column: str, what: str) -> float:
    vals = pd.to_numeric(g[column], errors="coerce").dropna()
    if len(vals) > 1:
        raise ValueError(f"{what}: {len(vals)} rows match; add a 'where' or 'each' column in paper_values.yaml")
    return float(vals.iloc[0]) if len(vals) else math.nan


def _lookup(spec, tables, files):
    df = _select(_table(tables, spec["table"]), spec.get("where"), spec["table"], spec.get("where_not"))
    return [(v, _one(g, spec["column"], f"tables/{spec['table']}.csv {v}")) for v, g in _groups(df, spec.get("each", []))]


def _ratio(spec, tables, files):
    num = {tuple(sorted(v.items())): x for v, x in _lookup(spec["numerator"], tables, files)}
    den = {tuple(sorted(v.items())): x for v, x in _lookup(spec["denominator"], tables, files)}
    return [(dict(k), num[k] / den[k] if den[k] else math.nan) for k in num if k in den]


def _argmin(spec, tables, files):
    df = _select(_table(tables, spec["table"]), spec.get("where"), spec["table"], spec.get("where_not"))
    out = []
    for v, g in _groups(df, spec.get("each", [])):
        g = g[pd.to_numeric(g[spec["column"]], errors="coerce").notna()]
        if g.empty:
            continue
        out.append((v, float(g.loc[g[spec["column"]].astype(float).idxmin(), spec["pick"]])))
    return out


def _equal_error_ratio(spec, tables, files):
    df = _table(tables, spec["table"])
    out = []
    for v, g in _groups(df, spec.get("each", [])):
        res = equal_error_ratio(g[g["sampler"] == "uniform"], g[g["sampler"] == "mg_is"])
        if res is not None:
            out.append(({**v, "note": "lower bound" if res[1] else ""}, float(res[0])))
    return out


def _json(spec, tables, files):
    if spec["file"] not in files:
        raise Missing(f"this study does not make the {spec['file']} file")
    obj = files[spec["file"]]
    if spec["key"] not in obj:
        raise Missing(f"{spec['file']} has no key {spec['key']!r}")
    return [({}, float(obj[spec["key"]]) / float(spec.get("divide_by", 1)))]


_CELL = re.compile(r"^\s*(-?[0-9.]+(?:e-?\d+)?)")


def _crowd_cell(spec, tables, files):
    df = _table(tables, "crowd_table3")
    methods = spec["method"] if isinstance(spec["method"], list) else [spec["method"]]
    rows = df[df["method"].isin(methods)]
    if rows.empty:
        raise Missing(f"the crowd study evaluated none of {methods}")
    out = []
    suffix = f": {spec['aggregation']}"
    for col in [c for c in df.columns if c.endswith(suffix)]:
        model, layer = col[: -len(suffix)].split("/", 1)
        for _, r in rows.iterrows():
            m = _CELL.match(str(r[col]))
            out.append(({"model": model, "layer": layer, "method": r["method"]}, float(m.group(1)) if m else math.nan))
    return out


def _calibration(spec, tables, files):
    out = []
    for name, obj in sorted((k[len("concept_model:"):], v) for k, v in files.items() if k.startswith("concept_model:")):
        cal = obj.get("calibration")
        if isinstance(cal, dict) and spec["key"] in cal:
            out.append(({"concept_model": name}, float(cal[spec["key"]])))
    if not out:
        raise Missing("no concept model of this study has an (a, b) calibration")
    return out


def _gain_over_best(spec, tables, files, study=None):
    df = _table(tables, spec["table"])
    where = dict(spec["target"])
    if where.get("method") == "line_methods":  # the study's explain methods with method: line
        where["method"] = sorted((study or {}).get("line_methods", {})) or ["line"]
    target = _select(df, where, spec["table"])
    out = []
    for v, g in _groups(df, spec.get("each", [])):
        t = g[g.index.isin(target.index)]
        rest = g[~g.index.isin(target.index)]
        if t.empty or rest.empty:
            continue
        best = rest.loc[rest[spec["column"]].astype(float).idxmax()]
        line = t.loc[t[spec["column"]].astype(float).idxmax()]
        out.append(({**v, "method": line["method"], "note": f"best other: {best['method']}"}, float(t[spec["column"]].astype(float).max() - best[spec["column"]])))
    if not out:
        raise Missing(f"tables/{spec['table']}.csv has no group with both LINE and another method")
    return out


EXTRACTORS: dict[str, Callable] = {
    "lookup": _lookup,
    "ratio": _ratio,
    "argmin": _argmin,
    "equal_error_ratio": _equal_error_ratio,
    "json": _json,
    "crowd_cell": _crowd_cell,
    "calibration": _calibration,
    "gain_over_best": _gain_over_best,
}


def _variant_text(study: Mapping[str, Any], variant: Mapping[str, Any]) -> str:
    parts = [f"study {study['study']} ({_DATASET_NAMES.get(study['dataset'], study['dataset'])})"]
    if "model" in variant:
        parts.append(f"{variant['model']}/{variant.get('layer', '')}")
    if "method" in variant:
        parts.append(f"method {variant['method']}")
    if "concept_model" in variant:
        parts.append(f"concept model {variant['concept_model']}")
    if variant.get("note"):
        parts.append(str(variant["note"]))
    return ", ".join(parts)


def _sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (NaN and 0 unchanged)."""
    x = float(x)
    if not np.isfinite(x) or x == 0:
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def compare(
    tables: Mapping[str, pd.DataFrame],
    study: Mapping[str, Any],
    files: Mapping[str, Any] | None = None,
    entries: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """The comparison table (module docstring): ``tables`` name -> the study's long table
    (``tables/<name>.csv``), ``study`` from ``study_descriptor``, ``files`` name -> parsed JSON
    (``crowd_cost``, ``concept_model:<name>``)."""
    entries = load_paper_values() if entries is None else entries
    files = files or {}
    rows = []
    for e in entries:
        base = {k: e[k] for k in ("id", "source", "spec", "quantity", "setting", "paper_value", "quote")}
        try:
            extract = EXTRACTORS[e["ours"]["kind"]]
            found = (extract(e["ours"], tables, files, study) if extract is _gain_over_best
                     else extract(e["ours"], tables, files))
            if not found:
                raise Missing("no row of this study's table holds this quantity")
            defined = [(v, x) for v, x in found if np.isfinite(x)]
            if not defined:  # e.g. an AUC bin no guide reaches: one row says so
                raise Missing("undefined for every guide / layer of this study (e.g. an empty AUC bin)")
            found = defined  # variants with no value (an empty bin for one guide) are left out
        except Missing as why:
            diffs = _differences(e["requires"], study, {})
            reason = "; ".join([f"not in this study: {why}", *diffs, *([e["reason"]] if e.get("reason") else [])])
            if diffs and study["dataset"] != "imagenet" and "imagenet" in e["requires"]:
                reason += f"; {NEEDS_PAPER_RUN}"
            rows.append({**base, "ours_setting": _variant_text(study, {}), "ours": math.nan, "difference": math.nan,
                         "difference_kind": "", "comparable": "no", "reason": reason})
            continue
        for variant, value in found:
            diffs = _differences(e["requires"], study, variant)
            reasons = list(diffs)
            if diffs and study["dataset"] != "imagenet" and "imagenet" in e["requires"]:
                reasons.append(NEEDS_PAPER_RUN)
            if e.get("reason"):
                reasons.append(e["reason"])
            if e["compare"] == "difference":
                diff, kind = value - float(e["paper_value"]), "ours - paper"
            elif e["compare"] == "ratio":
                diff, kind = value / float(e["paper_value"]), "ours / paper"
            else:
                diff, kind = math.nan, ""
            # 4 significant digits: the papers quote 2-4; more would be noise dressed as precision
            value, diff = _sig(value), _sig(diff)
            rows.append({**base, "ours_setting": _variant_text(study, variant), "ours": value, "difference": diff,
                         "difference_kind": kind, "comparable": "no" if diffs else "yes",
                         "reason": "; ".join(reasons)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt(x: Any, digits: int) -> str:
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:.{digits}g}"


def to_markdown(table: pd.DataFrame, study: Mapping[str, Any], digits: int = 3) -> str:
    """The comparison as a Markdown table (numbers to ``digits`` significant digits) under a heading
    and a note on how to read it."""
    head = ["source", "quantity", "paper setting", "paper", "ours (setting)", "ours", "difference", "comparable", "reason"]
    lines = [f"## Our numbers beside the papers' (study {study['study']})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        diff = _fmt(r["difference"], digits)
        if diff:
            diff += "x" if r["difference_kind"] == "ours / paper" else ""
        cells = [r["source"], r["quantity"], r["setting"], _fmt(r["paper_value"], digits), r["ours_setting"],
                 _fmt(r["ours"], digits), diff, r["comparable"], r["reason"]]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    yes = int((table["comparable"] == "yes").sum())
    lines += ["", f"{len(table)} rows for {table['id'].nunique()} numbers SPEC quotes; {yes} comparable like for like. "
              "difference = ours - paper, or ours / paper (marked x) for ratios. The papers' numbers and where SPEC "
              "quotes them: src/neuronaudit/report/paper_values.yaml. Why the MG-IS ratios differ: docs/fidelity.md."]
    return "\n".join(lines) + "\n"
