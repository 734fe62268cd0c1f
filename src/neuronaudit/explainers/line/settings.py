"""LINE's settings: the config's ``line`` section and a method entry's ``params`` (light: no torch).

A LINE method is an ``explain.methods`` entry with ``method: line``; its ``params.backends`` picks the
backends: ``offline`` (embedding-space proposer + retrieval generator: runs here, no extra packages)
or ``generative`` (transformers chat LLM + diffusers text-to-image pipeline: ``pip install -e .[line]``).
The offline variant's name must say so (``line_offline`` in the default config), so tables never pass
it off as the paper's LINE. Everything else is in the ``line`` section (config/README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["METHOD_TYPE", "BACKENDS", "PARAMS", "check_entry", "loop_settings"]

METHOD_TYPE = "line"
BACKENDS = ("offline", "generative")
#: a LINE method entry's params and their defaults
PARAMS: dict[str, Any] = {"backends": "offline"}


def check_entry(where: str, name: str, entry: Mapping[str, Any]) -> None:
    """Refuse an entry LINE could not run, naming the key."""
    backends = (entry.get("params") or {}).get("backends", PARAMS["backends"])
    if backends not in BACKENDS:
        raise ValueError(f"{where}.params.backends = {backends!r}: use one of {list(BACKENDS)}")
    if backends == "offline" and "offline" not in name:
        raise ValueError(f"{where}: a LINE method with offline backends must say so in its name (e.g. "
                         f"'{name if name != 'line' else 'line'}_offline'), so its results are never read as the "
                         "paper's LINE")
    if entry.get("presence", "label") != "label":
        raise ValueError(f"{where}.presence: LINE reads no presence matrix; set its concept model in "
                         "line.offline.concept_model")


def loop_settings(line: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~neuronaudit.explainers.line.loop.LoopSettings` fields from the ``line`` section."""
    return {"n_best": int(line.get("n_best", 5)), "n_random": int(line.get("n_random", 5)),
            "iterations": int(line.get("iterations", 10)), "n_images": int(line.get("n_images", 5)),
            "summary_top": int(line.get("summary_top", 3)), "score": str(line.get("score", "auc")),
            "control_images": line.get("control_images"), "seed": int(line.get("seed", 0))}
