"""The concept-model backends by name, and :func:`get_concept_model`, the factory over them.

Kept apart from :mod:`neuronaudit.concepts.base` (which the backends import for ``ConceptModel``) so
that no module imports its own importer. A new backend is a :class:`~neuronaudit.concepts.base.ConceptModel`
subclass with a ``from_spec`` class method, added to :data:`BACKEND_CLASSES`.
"""

from __future__ import annotations

from typing import Any

from neuronaudit.concepts.base import BACKENDS, ConceptModel
from neuronaudit.concepts.conse import ConSEConceptModel
from neuronaudit.concepts.openclip import OpenClipConceptModel
from neuronaudit.concepts.probe import ProbeConceptModel

__all__ = ["BACKENDS", "BACKEND_CLASSES", "get_concept_model"]

BACKEND_CLASSES: dict[str, type[ConceptModel]] = {
    "open_clip": OpenClipConceptModel,
    "conse": ConSEConceptModel,
    "probe": ProbeConceptModel,
}
assert tuple(BACKEND_CLASSES) == BACKENDS


def get_concept_model(spec: dict[str, Any]) -> ConceptModel:
    """Build a concept model from a config spec; ``spec["backend"]`` is one of :data:`BACKENDS`.

    * ``{"backend": "open_clip", "arch": ..., "pretrained": tag|path|None, "calibration": "published"|[a, b]}``
    * ``{"backend": "conse", "variant": 2, "top_t": 10, "input_size": None, "text_model": ..., "calibration": [a, b]}``
    * ``{"backend": "probe", "path": fitted.npz}`` or ``{"backend": "probe", "features": {...}, "head": "linear"}``
    """
    if not isinstance(spec, dict) or "backend" not in spec:
        raise ValueError(f"concept model spec {spec!r} needs a 'backend' key, one of {list(BACKENDS)}")
    cls = BACKEND_CLASSES.get(spec["backend"])
    if cls is None:
        raise ValueError(f"concept model spec: unknown backend {spec['backend']!r}; use one of {list(BACKENDS)}")
    return cls.from_spec(spec)
