"""Text cells of the tables: the one "mean ± SEM" format every table's ``mean_pm_sem`` column uses."""

from __future__ import annotations

import math

__all__ = ["mean_pm_sem"]


def mean_pm_sem(mean: float, sem: float, digits: int = 4, missing: str = "n/a") -> str:
    """``"0.1234 ± 0.0056"``; the mean alone when the SEM is not finite (one value); ``missing`` when
    the mean is not finite (nothing to average)."""
    if not math.isfinite(mean):
        return missing
    return f"{mean:.{digits}f} ± {sem:.{digits}f}" if math.isfinite(sem) else f"{mean:.{digits}f}"
