"""The target model's activations on generated images (LINE with a text-to-image generator).

Kept apart from :mod:`neuronaudit.explainers.line.generators` because it loads torch and the model
code; the offline variant reads stored activations (:class:`~.generators.LookupActivations`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from neuronaudit.activations.extract import pool_output
from neuronaudit.activations.models import resolve_module
from neuronaudit.explainers.line.generators import Generated

__all__ = ["ModelActivations"]


class ModelActivations:
    """The target model's activations of ``module`` on generated PIL images (pooled like the extraction:
    spatial mean of maps, CLS token of sequences), cached per concept."""

    def __init__(self, loaded: Any, module: str, device: str = "cpu", pooling: str = "auto", cache: int = 64) -> None:
        self.pooling = pooling
        self.loaded, self.device = loaded, device
        self.model = loaded.model.to(device).eval()
        self._captured: dict[str, Any] = {}
        resolve_module(self.model, module).register_forward_hook(lambda _m, _i, out: self._captured.__setitem__("out", out))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = cache

    def layer(self, images: Sequence[Any]) -> np.ndarray:
        x = torch.stack([self.loaded.transform(im) for im in images]).to(self.device)
        with torch.inference_mode():
            self.model(x)
        return pool_output(self._captured.pop("out"), self.pooling).cpu().numpy()

    def __call__(self, generated: Generated, neuron: int) -> np.ndarray:
        key = "\0".join(generated.image_ids)
        if key not in self._cache:
            self._cache[key] = self.layer(generated.images)
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return self._cache[key][:, neuron]
