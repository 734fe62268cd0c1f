"""RCE curves against n (Setting 1): the equal-error input ratio of Fig. 9, used by the figure, the
comparison with the paper and the fidelity study. Pure (NumPy and pandas only, no matplotlib)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["equal_error_ratio"]


def equal_error_ratio(uniform: pd.DataFrame, guided: pd.DataFrame) -> tuple[float, bool] | None:
    """How many times fewer inputs ``guided`` needs to reach uniform's RCE at uniform's largest n:
    n_max / n*, with n* where the guided curve crosses that RCE (log-log interpolation). The bool is
    True when the guided curve is already below it at its smallest n (the ratio is then a lower bound).
    None when the guided curve never gets that low."""
    if uniform.empty or guided.empty:
        return None
    u = uniform.sort_values("n")
    g = guided.sort_values("n")
    n_max, target = float(u["n"].iloc[-1]), float(u["rce"].iloc[-1])
    n, r = g["n"].to_numpy(float), g["rce"].to_numpy(float)
    if r[0] <= target:
        return n_max / n[0], True
    below = np.nonzero(r <= target)[0]
    if below.size == 0:
        return None
    k = below[0]
    lx0, lx1, ly0, ly1 = np.log(n[k - 1]), np.log(n[k]), np.log(r[k - 1]), np.log(r[k])
    n_star = np.exp(lx0 + (np.log(target) - ly0) * (lx1 - lx0) / (ly1 - ly0))
    return n_max / n_star, False
