"""Backbones whose pooled features several concept models share (light module: the Snakefile
imports it at parse time, so it must not import torch)."""

from __future__ import annotations

from typing import Any

#: native input size of EfficientNet-Lite0..4
LITE_INPUT = {0: 224, 1: 240, 2: 260, 3: 280, 4: 300}


def shared_backbone(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The image backbone of a ConSE or probe concept model, whose pooled features the pipeline
    extracts once (rule ``image_features``) for every concept model that shares it; None for
    backends that embed images themselves (open_clip)."""
    if spec["backend"] not in ("conse", "probe"):
        return None
    variant = int(spec.get("variant", 2))
    return {
        "source": "efficientnet_lite",
        "variant": variant,
        "input_size": int(spec.get("input_size") or LITE_INPUT[variant]),
        "layers": {"features": "global_pool"},
    }


def backbone_key(backbone: dict[str, Any]) -> str:
    return f"efficientnet_lite{backbone['variant']}_{backbone['input_size']}px"
