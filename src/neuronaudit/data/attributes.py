"""Simple visual attributes computed exactly from the pixels, so ground truth is known for every image.

Every attribute is a fixed threshold on a deterministic statistic of the image's luminance L in [0, 1]
(no learned model, no dataset-dependent quantile). The foreground mask is ``L > foreground`` for
datasets photographed on black (Fashion-MNIST, MNIST), else every pixel.

=========== ================================================================ ==============
attribute   statistic                                                        present when
=========== ================================================================ ==============
dark        mean L over the foreground                                       < ``dark``
bright      mean L over the foreground                                       > ``bright``
large       foreground fraction of the image                                 > ``large``
small       foreground fraction of the image                                 < ``small``
wide        width / height of the foreground's bounding box                  > ``wide``
tall        width / height of the foreground's bounding box                  < ``tall``
textured    mean gradient magnitude |∇L| over the foreground                 > ``textured``
symmetric   1 - mean|L - mirror(L)| / mean L  (left-right mirror symmetry)   > ``symmetric``
colorful    mean HSV saturation (RGB datasets only)                          > ``colorful``
=========== ================================================================ ==============

Defaults were chosen on Fashion-MNIST's test split so that each attribute holds for roughly 15-25% of
images (see docs/datasets.md); they are config keys (``dataset.attributes``).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLDS = {
    "foreground": 0.1,
    "dark": 0.45,
    "bright": 0.78,
    "large": 0.6,
    "small": 0.3,
    "wide": 1.3,
    "tall": 0.6,
    "textured": 0.22,
    "symmetric": 0.8,
    "colorful": 0.35,
}
ATTRIBUTES = ["dark", "bright", "large", "small", "wide", "tall", "textured", "symmetric", "colorful"]


def attribute_statistics(images: np.ndarray, black_background: bool, foreground: float = 0.1) -> dict[str, np.ndarray]:
    """Per-image statistics for a stack of images (B, H, W) grey or (B, H, W, 3) RGB, uint8 or [0, 1]."""
    x = images.astype(np.float32)
    if images.dtype == np.uint8:
        x /= 255.0
    rgb = x if x.ndim == 4 else None
    lum = x @ np.array([0.299, 0.587, 0.114], np.float32) if rgb is not None else x
    mask = lum > foreground if black_background else np.ones_like(lum, dtype=bool)
    count = np.maximum(mask.sum((1, 2)), 1)
    gy, gx = np.gradient(lum, axis=(1, 2))
    cols, rows = mask.any(1), mask.any(2)
    stats = {
        "mean_lum": (lum * mask).sum((1, 2)) / count,
        "area": mask.mean((1, 2)),
        "aspect": cols.sum(1) / np.maximum(rows.sum(1), 1),
        "gradient": (np.hypot(gx, gy) * mask).sum((1, 2)) / count,
        "symmetry": 1 - np.abs(lum - lum[:, :, ::-1]).mean((1, 2)) / np.maximum(lum.mean((1, 2)), 1e-3),
    }
    if rgb is not None:
        mx, mn = rgb.max(-1), rgb.min(-1)
        stats["saturation"] = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0).mean((1, 2))
    return stats


def attribute_presence(
    images: np.ndarray, black_background: bool, thresholds: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Boolean presence of each attribute (see the module table) for a stack of images."""
    t = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    s = attribute_statistics(images, black_background, t["foreground"])
    out = {
        "dark": s["mean_lum"] < t["dark"],
        "bright": s["mean_lum"] > t["bright"],
        "textured": s["gradient"] > t["textured"],
        "symmetric": s["symmetry"] > t["symmetric"],
    }
    if black_background:  # object extent is only defined when the background is known
        out |= {
            "large": s["area"] > t["large"],
            "small": s["area"] < t["small"],
            "wide": s["aspect"] > t["wide"],
            "tall": s["aspect"] < t["tall"],
        }
    if "saturation" in s:
        out["colorful"] = s["saturation"] > t["colorful"]
    return out
