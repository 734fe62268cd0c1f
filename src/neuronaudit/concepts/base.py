"""Concept models ("dataset embeddings"): estimated concept presence [c_t]_x for every image.

A concept model turns images into embeddings once (:meth:`ConceptModel.encode_images`, streamed,
the expensive step) and then scores any concept against the stored embeddings (cheap):

    raw_{x,t} = cos(img_x, text_t)                     (open_clip, ConSE)
    [c_t]_x   = sigmoid(a * (raw_{x,t} + b))           (SPEC sec. 2; calibration.py)

The raw concept string is encoded with no prompt template (SPEC sec. 2: "the raw concept string
encoded with no prompt template"). The probe backend (probe.py) has no text encoder: its "embedding"
is a feature vector, its raw score a logit of a per-concept linear probe, and its probability
sigmoid(logit).

Backends (:func:`neuronaudit.concepts.backends.get_concept_model`, by ``spec["backend"]``):

* ``open_clip`` — any open_clip image-text model (CLIP, SigLIP...), pretrained tag or local checkpoint.
* ``conse`` — ConSE (Norouzi et al., ICLR 2014) over an ImageNet classifier and MiniLM: offline.
* ``probe`` — linear (or MLP) probes on a non-target model's features, trained on labelled concepts.

Presence file (:func:`write_presence`): a matrix Parquet file (neuronaudit.io) with one row per image
in the order given, columns ``probability`` ([c_t]_x in [0, 1]) and ``score`` (the raw score), one
entry per concept; the concept names are the file's ``neuronaudit.columns``; the provenance
(backend, model, calibration) is in ``neuronaudit.meta``. Images that could not be decoded have NaN
embeddings and therefore NaN presence rows.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from neuronaudit.concepts.calibration import Calibration, calibrate, fit_calibration
from neuronaudit.data.images import ImageSource, iterate_batches
from neuronaudit.io import MatrixWriter, provenance, write_matrix

BACKENDS = ("open_clip", "conse", "probe")


def _as_concepts(concepts: Sequence[str] | str) -> list[str]:
    if isinstance(concepts, str):
        concepts = [concepts]
    out = [str(c) for c in concepts]
    if not out:
        raise ValueError("no concepts given")
    return out


def l2_normalise(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """x / ||x|| along ``axis`` (rows of zeros stay zero; NaN rows stay NaN)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def parse_calibration(value: Any) -> tuple[float, float] | None:
    """A spec's ``calibration``: ``[a, b]``, ``{"a": .., "b": ..}``, a Calibration, or None."""
    if value is None:
        return None
    if isinstance(value, dict):
        if not {"a", "b"} <= set(value):
            raise ValueError(f"calibration {value!r}: a mapping needs keys 'a' and 'b'")
        return float(value["a"]), float(value["b"])
    if isinstance(value, (list, tuple)) and len(value) >= 2:
        return float(value[0]), float(value[1])
    raise ValueError(f"calibration {value!r}: give [a, b], {{'a': a, 'b': b}}, 'published' or 'fit'")


class ConceptModel(ABC):
    """Interface of every concept model; subclasses provide the image and text encoders."""

    backend: str = ""
    name: str = ""
    #: (a, b) of p = sigmoid(a (cos + b)); None until published, given or fitted
    calibration: tuple[float, float] | None = None
    #: False for models that score only the concepts they were trained on (the probe)
    has_text_encoder: bool = True

    # -- images ---------------------------------------------------------------------------------
    @property
    @abstractmethod
    def image_transform(self):
        """PIL image -> (3, H, W) tensor, the preprocessing of the image encoder."""

    @property
    @abstractmethod
    def embedding_dim(self) -> int: ...

    @abstractmethod
    def _embed_batch(self, x):
        """(B, 3, H, W) tensor on the model's device -> (B, D) tensor."""

    @abstractmethod
    def to(self, device: str) -> ConceptModel: ...

    def encode_images(
        self,
        source: ImageSource,
        batch_size: int = 64,
        device: str = "cpu",
        workers: int | None = None,
        progress: bool = True,
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Embed every image of ``source``, in order, streaming batches (tqdm progress on stderr).

        Returns ``(embeddings, failed)``: an (N, D) float32 array (rows of undecodable images are NaN)
        and the list of (position, error) of those images.
        """
        import torch  # deferred: the base class is imported by torch-free code (data access, checks)
        from tqdm.auto import tqdm  # deferred with torch, for encode_images only

        self.to(device)
        out = np.full((len(source), self.embedding_dim), np.nan, dtype=np.float32)
        failed: list[tuple[int, str]] = []
        bar = tqdm(total=len(source), unit="img", desc=f"{self.backend}:{self.name}", disable=not progress)
        with torch.inference_mode():
            for batch in iterate_batches(source, self.image_transform, batch_size, workers, device):
                failed.extend(batch.failed)
                if batch.tensor is not None:
                    emb = self._embed_batch(batch.tensor.to(device, non_blocking=True))
                    out[batch.indices] = emb.float().cpu().numpy()
                bar.update(len(batch.indices) + len(batch.failed))
        bar.close()
        return out, failed

    # -- text -----------------------------------------------------------------------------------
    @abstractmethod
    def encode_text(self, concepts: Sequence[str]) -> np.ndarray:
        """(C, D) float32 L2-normalised embeddings of the raw concept strings (no prompt template)."""

    def similarity(self, img_emb: np.ndarray, txt_emb: np.ndarray) -> np.ndarray:
        """cos(img_x, text_t): (N, D) x (C, D) -> (N, C) float32."""
        img = l2_normalise(img_emb)
        txt = l2_normalise(txt_emb)
        if img.shape[-1] != txt.shape[-1]:
            raise ValueError(
                f"{self.backend}:{self.name}: image embeddings have dimension {img.shape[-1]} but text "
                f"embeddings {txt.shape[-1]}; were the image embeddings made by another concept model?"
            )
        return img @ txt.T

    # -- presence -------------------------------------------------------------------------------
    def scores(self, img_emb: np.ndarray, concepts: Sequence[str]) -> np.ndarray:
        """Raw concept scores (N, C): the cosine similarity for embedding models."""
        return self.similarity(img_emb, self.encode_text(_as_concepts(concepts)))

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores -> probabilities: sigmoid(a (raw + b)) with this model's (a, b)."""
        if self.calibration is None:
            raise ValueError(
                f"{self.backend}:{self.name} has no calibration (a, b): give 'calibration': [a, b] in its "
                "spec, or fit one with .fit_calibration(embeddings, concepts, labels)"
            )
        return calibrate(raw, *self.calibration)

    def presence(self, img_emb: np.ndarray, concepts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(probability, raw score), both (N, C) float32: p = sigmoid(a (cos + b)) (SPEC sec. 2)."""
        raw = self.scores(img_emb, concepts)
        return self.probability(raw), raw

    def fit_calibration(
        self, img_emb: np.ndarray, concepts: Sequence[str], labels: np.ndarray, **grid
    ) -> Calibration:
        """Fit (a, b) by the paper's grid search against (N, C) binary labels and keep it (SPEC sec. 2)."""
        fitted = fit_calibration(self.scores(img_emb, concepts), labels, **grid)
        self.calibration = (fitted.a, fitted.b)
        return fitted

    def info(self) -> dict[str, Any]:
        """Provenance for output files."""
        return {"backend": self.backend, "name": self.name, "calibration": self.calibration}


def write_embeddings(
    path: str | os.PathLike, image_ids, embeddings: np.ndarray, model: ConceptModel, meta=None
):
    """Write image embeddings as a matrix file (column ``embedding``) with the model's provenance."""
    write_matrix(
        path,
        image_ids,
        {"embedding": embeddings},
        meta=provenance(concept_model=model.info(), **(meta or {})),
    )


def write_presence(
    path: str | os.PathLike,
    image_ids,
    embeddings: np.ndarray,
    concepts: Sequence[str],
    model: ConceptModel,
    chunk: int = 4096,
    meta: dict | None = None,
) -> None:
    """Score ``concepts`` on stored embeddings and stream the presence file (see module docstring).

    Rows are processed ``chunk`` images at a time, so 20,000 concepts x 50,000 images never sit in
    memory at once; the text side is encoded once.
    """
    concepts = _as_concepts(concepts)
    image_ids = list(image_ids)
    if len(image_ids) != len(embeddings):
        raise ValueError(f"write_presence: {len(image_ids)} image ids but {len(embeddings)} embeddings")
    model.probability(np.zeros((0, 0), np.float32))  # fail before any work if (a, b) is missing
    txt = model.encode_text(concepts) if model.has_text_encoder else None
    widths = {"probability": len(concepts), "score": len(concepts)}
    info = provenance(concept_model=model.info(), **(meta or {}))
    with MatrixWriter(path, widths, columns=concepts, meta=info) as w:
        for s in range(0, len(image_ids), chunk):
            emb = embeddings[s : s + chunk]
            raw = model.similarity(emb, txt) if txt is not None else model.scores(emb, concepts)
            w.write(image_ids[s : s + chunk], probability=model.probability(raw), score=raw)
