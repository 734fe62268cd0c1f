"""The paper's own numbers, as SPEC (../shared/SPEC.md sec. 2-5) quotes them, to set beside ours.

Only numbers SPEC states are here; a method or figure SPEC gives no number for has none (the tables
then leave the paper's cell empty rather than guess).
"""

from __future__ import annotations

__all__ = ["PAPER_SCORES", "PAPER_TABLE4", "paper_score"]

# Mean correlation score, ResNet-50 layer4 (2048 neurons) and ViT-B/16 layer 11 MLP (SPEC sec. 2,
# Linear Explanations paper Table 1 and seed 001 Table 2), by the method names of our configs.
PAPER_SCORES: dict[str, dict[str, float]] = {
    "network_dissection": {"rn50": 0.1242},
    "milan": {"rn50": 0.0920},
    "clip_dissect": {"rn50": 0.1871, "vit": 0.1722},
    "le_label": {"rn50": 0.2924, "vit": 0.3243},
    "le_siglip": {"rn50": 0.3772, "vit": 0.3489},
    "compexp_l3": {"rn50": 0.1399},
    "invert_l3": {"rn50": 0.2341},
    "cce_l5": {"rn50": 0.0993},
    "cce_l15": {"rn50": 0.1510},
}

# Table 4 (seed 001): RCE at n = 180 by the guide's AUC bin 0-0.6, 0.6-0.8, 0.8-0.95, 0.95-0.99, 0.99-1.
PAPER_TABLE4: dict[str, list[float]] = {
    "Uniform": [0.271, 0.408, 0.447, 0.513, 0.677],
    "MG-IS": [0.268, 0.351, 0.299, 0.210, 0.089],
}

def paper_score(method: str, arch: str) -> str:
    """The paper's mean score for our method name on ``arch`` ("rn50" / "vit") as text, "" if SPEC
    quotes none. An LE guided by another concept model (``le_<model>``) is read against LE(SigLIP)."""
    key, note = method, ""
    if key not in PAPER_SCORES and key.startswith("le_") and not key.startswith(("le_l1", "le_label")):
        key, note = "le_siglip", " (LE(SigLIP))"
    value = PAPER_SCORES.get(key, {}).get(arch)
    return "" if value is None else f"{value:.3f}{note}"
