"""LINE's image generators, and how the neuron's activations on their images are obtained.

Interface (:class:`Generator`): ``generate(concept) -> Generated`` (image ids, prompts, and either the
rows of held-out images or PIL images). The prompt of image i is SPEC sec. 6's template
``"A realistic photo of a <concept>, <angle>, <lighting>"``, angle and lighting drawn from seed i and
the concept (:func:`image_prompts`), seeds 0..n-1.

* :class:`RetrievalGenerator` (offline, ``line_offline``): the ``n_images`` held-out images the concept
  model rates highest for the concept (cosine of the stored image embedding and the concept's text
  embedding, which orders images as the calibrated probability does). The held-out images are a split
  the neuron's explanation is neither generated on (control images, top classes) nor scored on
  (``line.offline.split``, default ``train``; never the scoring split).
* :class:`DiffusersGenerator` (``line``): a diffusers text-to-image pipeline (default
  ``stabilityai/sd-turbo``, 1 step, guidance 0; recommended SDXL), the n images of a concept in one
  batched call with one ``torch.Generator`` per image seeded 0..n-1, on the GPU when present. Images
  of a concept are kept (LRU), so the class names every neuron starts from are drawn once per job.
  diffusers is an optional extra (``pip install -e .[line]``).

Activations: :class:`LookupActivations` reads a retrieved image's stored activations;
:class:`neuronaudit.explainers.line.targets.ModelActivations` runs the target model on generated
images (forward hook on the layer, pooled as the extraction pools it).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PROMPT_TEMPLATE", "ANGLES", "LIGHTING", "image_prompts", "Generated", "Generator",
           "RetrievalGenerator", "DiffusersGenerator", "LookupActivations"]

PROMPT_TEMPLATE = "A realistic photo of a {concept}, {angle}, {lighting}"
ANGLES = ("close-up", "wide shot", "view from above", "low angle view")
LIGHTING = ("natural light", "studio lighting", "soft diffuse light")


def image_prompts(concept: str, n: int, template: str = PROMPT_TEMPLATE) -> list[str]:
    """The prompts of images 0..n-1 of ``concept``; image i's angle and lighting come from seed i and the
    concept's text, so they are the same in every run."""
    out = []
    for i in range(n):
        r = np.random.default_rng([i, zlib.crc32(concept.encode("utf-8"))])
        out.append(template.format(concept=concept, angle=ANGLES[int(r.integers(len(ANGLES)))],
                                   lighting=LIGHTING[int(r.integers(len(LIGHTING)))]))
    return out


@dataclass
class Generated:
    concept: str
    image_ids: list[str]
    prompts: list[str]
    rows: np.ndarray | None = None  # retrieval: rows of the held-out set
    images: list[Any] | None = field(default=None, repr=False)  # generation: PIL images


class Generator(ABC):
    name: str = ""
    n_images: int = 5

    @abstractmethod
    def generate(self, concept: str) -> Generated: ...

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "n_images": self.n_images}


class RetrievalGenerator(Generator):
    """The held-out images the concept model rates highest for a concept (offline stand-in for T2I).

    ``image_emb`` (N x D) are the concept model's stored embeddings of the held-out images,
    ``image_ids`` their ids; ``encode(texts) -> (n, D)`` its text encoder. :meth:`precompute` encodes a
    whole vocabulary in one call (one cache entry instead of one per concept)."""

    name = "retrieval"

    def __init__(self, image_ids: Sequence[str], image_emb: np.ndarray, encode: Callable[[list[str]], np.ndarray],
                 *, n_images: int = 5, concept_model: str = "", split: str = "", cache: int = 100_000) -> None:
        emb = np.asarray(image_emb, dtype=np.float32)
        ok = np.isfinite(emb).all(axis=1)
        self.image_ids = np.asarray(image_ids, dtype=object)[ok]
        self.source_rows = np.flatnonzero(ok)
        norm = np.linalg.norm(emb[ok], axis=1, keepdims=True)
        self.emb = emb[ok] / np.where(norm > 0, norm, 1.0)
        if len(self.emb) < n_images:
            raise ValueError(f"retrieval generator: {len(self.emb)} held-out images with an embedding, "
                             f"fewer than n_images = {n_images}")
        self.encode, self.n_images = encode, int(n_images)
        self.concept_model, self.split = concept_model, split
        self._text: dict[str, np.ndarray] = {}
        self._done: dict[str, Generated] = {}
        self.cache = int(cache)

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "n_images": self.n_images, "concept_model": self.concept_model,
                "split": self.split, "n_heldout": int(len(self.emb))}

    def precompute(self, concepts: Sequence[str]) -> None:
        todo = [c for c in dict.fromkeys(concepts) if c not in self._text]
        if todo:
            for c, e in zip(todo, np.asarray(self.encode(todo), dtype=np.float32), strict=True):
                self._text[c] = e / max(float(np.linalg.norm(e)), 1e-12)

    def generate(self, concept: str) -> Generated:
        if concept in self._done:  # every neuron starts from the same classes: retrieve them once
            return self._done[concept]
        self.precompute([concept])
        sims = self.emb @ self._text[concept]
        top = np.argpartition(-sims, self.n_images - 1)[: self.n_images]
        top = top[np.lexsort((top, -sims[top]))]  # best first, ties by position
        out = Generated(concept, [str(i) for i in self.image_ids[top]], image_prompts(concept, self.n_images),
                        rows=self.source_rows[top])
        if len(self._done) < self.cache:
            self._done[concept] = out
        return out


class LookupActivations:
    """Activations of retrieved images: rows of a stored (N_heldout x K) activation matrix."""

    def __init__(self, activations: np.ndarray) -> None:
        self.activations = np.asarray(activations, dtype=np.float32)

    def __call__(self, generated: Generated, neuron: int) -> np.ndarray:
        return self.activations[generated.rows, neuron]


class DiffusersGenerator(Generator):
    """A diffusers text-to-image pipeline; ``pipeline`` is a hub id / local directory or a built pipeline."""

    name = "diffusers"

    def __init__(self, pipeline: Any = "stabilityai/sd-turbo", *, n_images: int = 5, steps: int = 1,
                 guidance_scale: float = 0.0, height: int | None = None, width: int | None = None,
                 batch_size: int = 5, device: str | None = None, dtype: str = "auto", cache: int = 64) -> None:
        try:
            import diffusers
            import torch
        except ImportError as exc:  # pragma: no cover - the extra is installed in CI
            raise ImportError("the diffusers generator needs diffusers: pip install -e .[line]") from exc
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model_name = pipeline if isinstance(pipeline, str) else type(pipeline).__name__
        if isinstance(pipeline, str):
            if dtype == "auto":
                dtype = "float16" if self.device.startswith("cuda") else "float32"
            pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(pipeline, torch_dtype=getattr(torch, dtype))
        self.pipe = pipeline.to(self.device)
        if hasattr(self.pipe, "set_progress_bar_config"):
            self.pipe.set_progress_bar_config(disable=True)
        self.n_images, self.steps, self.guidance_scale = int(n_images), int(steps), float(guidance_scale)
        self.height, self.width, self.batch_size = height, width, max(1, int(batch_size))
        self._cache: OrderedDict[str, Generated] = OrderedDict()
        self._size = cache

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model_name, "n_images": self.n_images, "steps": self.steps,
                "guidance_scale": self.guidance_scale, "height": self.height, "width": self.width,
                "batch_size": self.batch_size, "device": self.device}

    def generate(self, concept: str) -> Generated:
        if concept in self._cache:
            self._cache.move_to_end(concept)
            return self._cache[concept]
        prompts = image_prompts(concept, self.n_images)
        images: list[Any] = []
        gen_device = self.device if self.device.startswith("cuda") else "cpu"
        for s in range(0, self.n_images, self.batch_size):
            seeds = range(s, min(s + self.batch_size, self.n_images))
            generators = [self.torch.Generator(gen_device).manual_seed(i) for i in seeds]
            kw = {k: v for k, v in (("height", self.height), ("width", self.width)) if v}
            out = self.pipe(prompt=[prompts[i] for i in seeds], generator=generators, num_inference_steps=self.steps,
                            guidance_scale=self.guidance_scale, **kw)
            images.extend(out.images)
        g = Generated(concept, [f"gen:{concept}#{i}" for i in range(self.n_images)], prompts, images=images)
        self._cache[concept] = g
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return g
