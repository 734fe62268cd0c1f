"""The concept-model stages of the pipeline (rules embed_images, fit_concept_model, presence).

1. ``embed``: images -> ``embeddings/{concept_model}.parquet`` (the expensive pass; once per model).
2. ``fit``: on the ``train`` split, fit the calibration (a, b) of p = sigmoid(a (cos + b)) against the
   dataset's ground-truth concepts by SPEC sec. 2's grid search (or take the published / given values),
   or train the probe. Writes ``concept_models/{concept_model}.npz`` (what scoring needs) and ``.json``
   (the fitted values and held-out AUCs, for people).
3. ``presence``: stored embeddings x a vocabulary -> ``presence/{concept_model}/{vocabulary}.parquet``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from neuronaudit.activations.extract import extract_activations
from neuronaudit.activations.models import load_model
from neuronaudit.concepts.backbones import backbone_key, shared_backbone  # noqa: F401 (re-exported)
from neuronaudit.concepts.backends import get_concept_model
from neuronaudit.concepts.base import ConceptModel, l2_normalise, write_embeddings, write_presence
from neuronaudit.data.datasets import labels_matrix
from neuronaudit.data.images import DEFAULT_MAX_FAILED_FRACTION, ImageSource, SkippedImages
from neuronaudit.io import atomic_path, read_matrix, write_json
from neuronaudit.scoring import auc_scores

log = logging.getLogger(__name__)


def backend_spec(spec: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Translate a config ``concept_models`` entry into the backend's constructor spec."""
    spec = dict(spec)
    calibration = spec.pop("calibration", "fit")
    probe = spec.pop("probe", {}) or {}  # schema default; only the probe backend reads it
    if spec["backend"] == "probe":
        features = {"source": "efficientnet_lite", "variant": int(spec.pop("variant", 2))}
        if spec.get("input_size"):
            features["input_size"] = int(spec["input_size"])
        spec.update(features=features, head=probe.get("kind", "linear"), l2=probe.get("l2", 0.1))
    elif isinstance(calibration, list | tuple):
        spec["calibration"] = list(calibration)
    elif calibration == "published":
        spec["calibration"] = "published"
    spec["device"] = device
    return spec


def image_features(backbone: dict[str, Any], manifest_path: str, out: str, report_out: str | None = None,
                   batch_size: int = 64, device: str = "cpu",
                   max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION, meta: dict | None = None,
                   progress: bool = True):
    """The shared backbone's pooled features of every manifest image (rule image_features).

    Undecodable images get no row, are named in the log and ``report_out``, and fail the stage beyond
    ``max_failed_fraction`` (the config's ``images.max_failed_fraction``, docs/datasets.md)."""
    report = extract_activations(
        ImageSource.from_manifest(manifest_path),
        load_model(backbone),
        backbone["layers"],
        {"features": out},
        batch_size=batch_size,
        device=device,
        max_failed_fraction=max_failed_fraction,
        meta=meta,
        progress=progress,
        stage=f"image_features {backbone_key(backbone)}",
    )
    if report_out:
        report.write(report_out)
    return report


def embed_from_features(spec: dict[str, Any], features_path: str, manifest_path: str, out: str,
                        meta: dict | None = None, report_out: str | None = None,
                        max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION) -> SkippedImages:
    """Concept-model embeddings from a backbone's stored pooled features (no second image pass).

    Images the features stage could not decode (it skipped them, see its ``.report.json``) get NaN
    rows, as :func:`embed` gives them; they are listed in the returned report (``report_out``)."""
    model = get_concept_model(backend_spec(spec, "cpu"))
    manifest = pd.read_parquet(manifest_path, columns=["image_id", "source"])
    feats = read_matrix(features_path, ["activation"])
    full = np.full((len(manifest), feats["activation"].shape[1]), np.nan, np.float32)
    pos = pd.Index(manifest["image_id"]).get_indexer(feats.image_ids)
    if (pos < 0).any():
        raise ValueError(f"{features_path} has images that are not in {manifest_path}; rerun image_features")
    full[pos] = feats["activation"]
    if spec["backend"] == "conse":
        ok = np.isfinite(full).all(1)
        emb = np.full((len(full), model.embedding_dim), np.nan, np.float32)
        emb[ok] = model.embed_features(full[ok])
    else:  # the probe's embedding is the backbone's pooled feature vector itself
        emb = full
    skipped = SkippedImages(f"embed_images {spec['backend']}", len(manifest))
    missing = np.ones(len(manifest), bool)
    missing[pos] = False
    for i in np.flatnonzero(missing):
        skipped.add(manifest["image_id"].iat[i], manifest["source"].iat[i],
                    f"skipped by image_features (see {os.path.splitext(features_path)[0]}.report.json)")
    skipped.log(log, max_failed_fraction)
    skipped.check(max_failed_fraction)
    write_embeddings(out, manifest["image_id"], emb, model, meta={**(meta or {}), "features": features_path})
    if report_out:
        write_json(skipped.to_dict(max_failed_fraction), report_out)
    log.info("%d images embedded from stored features (%d missing)", len(emb), int((~np.isfinite(emb).all(1)).sum()))
    return skipped


def embed(spec: dict[str, Any], manifest_path: str, out: str, batch_size: int = 64, device: str = "cpu",
          meta: dict | None = None, report_out: str | None = None,
          max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION) -> list[tuple[int, str]]:
    """Embed the manifest's images with the concept model itself. Undecodable images get NaN rows,
    are named in the log and ``report_out``, and fail the stage beyond ``max_failed_fraction``
    (``images.max_failed_fraction``)."""
    model = get_concept_model(backend_spec(spec, device))
    source = ImageSource.from_manifest(manifest_path)
    emb, failed = model.encode_images(source, batch_size=batch_size, device=device)
    skipped = SkippedImages(f"embed_images {spec['backend']}", len(source),
                            [(source.image_ids[i], source.uris[i], err) for i, err in failed])
    skipped.finish(log, max_failed_fraction)
    write_embeddings(out, source.image_ids, emb, model, meta=meta)
    if report_out:
        write_json(skipped.to_dict(max_failed_fraction), report_out)
    log.info("%d images embedded (%d failed, NaN rows), dimension %d", len(source), len(failed), emb.shape[1])
    return failed


def fit(
    spec: dict[str, Any],
    embeddings_path: str,
    manifest_path: str,
    labels_path: str,
    state_out: str,
    summary_out: str,
    grid: dict[str, float] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Fit the calibration or the probe on the train split; report AUC on the other splits."""
    manifest = pd.read_parquet(manifest_path)
    labels = pd.read_parquet(labels_path)
    emb = read_matrix(embeddings_path, ["embedding"])
    if list(emb.image_ids) != list(manifest["image_id"]):
        raise ValueError(f"{embeddings_path} rows do not match {manifest_path}; rerun the embed_images rule")
    # SPEC sec. 2 fits (a, b) against class one-hot labels plus superclasses (not pixel attributes);
    # the probe learns every labelled concept
    kinds = None if spec["backend"] == "probe" else {"class", "superclass"}
    if kinds is not None:
        labels = labels[labels["kind"].isin(kinds)]
    y, concepts = labels_matrix(labels, manifest["image_id"])
    x = emb["embedding"]
    ok = np.isfinite(x).all(1)
    train = (manifest["split"] == "train").to_numpy() & ok
    held = (manifest["split"] != "train").to_numpy() & ok
    if spec["backend"] != "probe" and isinstance(spec.get("calibration"), list):
        train = train[:0]  # given (a, b): nothing to fit
    model = get_concept_model(backend_spec(spec, device))
    summary: dict[str, Any] = {"backend": spec["backend"], "concepts": concepts}
    if spec["backend"] == "probe":
        if not train.any():
            raise ValueError("the probe concept model needs a 'train' split: set dataset.splits.train")
        idx = np.flatnonzero(train)
        max_train = (spec.get("probe") or {}).get("max_train")
        if max_train and max_train < len(idx):  # a seeded random subset: manifest order groups classes
            idx = np.sort(np.random.default_rng(0).choice(idx, int(max_train), replace=False))
        model.fit(x[idx], y[idx].astype(np.float64), concepts)
        model.save(state_out)
        summary["n_train"] = int(len(idx))
        summary["degenerate"] = model.degenerate  # concepts fitted without a probe, by reason
    else:
        if spec.get("calibration", "fit") == "fit":
            if not train.any():
                raise ValueError(f"calibration: fit needs a 'train' split (dataset.splits.train) for {spec['backend']}")
            a_grid = np.arange(grid["a_step"], grid["a_max"] + 1e-9, grid["a_step"]) if grid else None
            b_grid = np.arange(grid["b_min"], grid["b_max"] + 1e-9, grid["b_step"]) if grid else None
            fitted = model.fit_calibration(x[train], concepts, y[train], a_grid=a_grid, b_grid=b_grid)
            summary["fit_bce"] = float(fitted.bce) if hasattr(fitted, "bce") else None
            summary["n_train"] = int(train.sum())
        a, b = model.calibration
        with atomic_path(state_out) as tmp:
            np.savez(tmp, calibration=np.array([a, b], dtype=np.float64))
        summary["calibration"] = {"a": a, "b": b}
    if held.any():
        prob, _ = model.presence(x[held], concepts)
        auc = auc_scores(prob, y[held], pairwise=False)
        summary["heldout_auc"] = {c: (None if not np.isfinite(v) else round(float(v), 4)) for c, v in zip(concepts, auc, strict=True)}
        summary["heldout_auc_mean"] = float(np.nanmean(auc))
        log.info("held-out AUC over %d concepts: mean %.3f", len(concepts), summary["heldout_auc_mean"])
    write_json(summary, summary_out)
    return summary


def load_fitted(spec: dict[str, Any], state_path: str, device: str = "cpu") -> ConceptModel:
    """A concept model ready to score: the saved probe, or the backend with its fitted (a, b)."""
    if spec["backend"] == "probe":
        return get_concept_model({"backend": "probe", "path": os.fspath(state_path), "device": device})
    model = get_concept_model(backend_spec(spec, device))
    with np.load(state_path) as z:
        a, b = z["calibration"]
    model.calibration = (float(a), float(b))
    return model


def presence(
    spec: dict[str, Any],
    state_path: str,
    embeddings_path: str,
    concepts: list[str],
    out: str,
    meta: dict | None = None,
    device: str = "cpu",
) -> None:
    model = load_fitted(spec, state_path, device)
    emb = read_matrix(embeddings_path, ["embedding"])
    write_presence(out, emb.image_ids, emb["embedding"], concepts, model, meta=meta)
    log.info("presence of %d concepts on %d images", len(concepts), len(emb.image_ids))


def concept_model_matrix(
    model: ConceptModel,
    embeddings_path,
    rows: np.ndarray,
    concepts: Sequence[str],
    value: str = "probability",
    *,
    image_ids=None,
    chunk: int = 2048,
) -> np.ndarray:
    """A loaded concept model's ``probability`` or raw ``score`` (len(rows) x C, float32) of ``concepts``
    on the stored image embeddings of manifest ``rows`` (checked against ``image_ids`` when given).

    The text side is encoded once, the images in chunks of ``chunk`` rows. (Where the pipeline has a
    presence file for the pair, read it with :func:`neuronaudit.data.arrays.read_presence` instead.)
    """
    if value not in ("probability", "score"):
        raise ValueError(f"value must be 'probability' or 'score', got {value!r}")
    concepts = list(concepts)
    emb_file = read_matrix(embeddings_path, ["embedding"])
    if image_ids is not None and not np.array_equal(emb_file.image_ids[rows], np.asarray(image_ids)):
        raise ValueError(f"{embeddings_path}: rows do not match the requested images; rerun embed_images")
    emb = emb_file["embedding"][rows]
    txt = l2_normalise(model.encode_text(concepts)) if model.has_text_encoder else None
    out = np.empty((len(rows), len(concepts)), dtype=np.float32)
    for s in range(0, len(rows), chunk):
        raw = model.similarity(emb[s : s + chunk], txt) if txt is not None else model.scores(emb[s : s + chunk], concepts)
        out[s : s + chunk] = raw if value == "score" else model.probability(raw)
    return out
