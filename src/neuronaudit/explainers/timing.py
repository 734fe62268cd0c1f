"""Runtime per explanation method and layer, as in the paper's Tables 8 and 9 (seed 001, C.6)."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pandas as pd

__all__ = ["RuntimeLog"]


class RuntimeLog:
    """Records wall-clock seconds per (method, layer).

    >>> log = RuntimeLog()
    >>> with log.time("clip_dissect", "layer4", n_neurons=2048):
    ...     pass
    >>> list(log.to_frame().columns)
    ['method', 'layer', 'seconds', 'n_neurons', 'device']
    """

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.records: list[dict] = []

    @contextmanager
    def time(self, method: str, layer: str, n_neurons: int | None = None):
        start = time.perf_counter()
        try:
            yield self
        finally:
            self.records.append({"method": method, "layer": layer, "seconds": time.perf_counter() - start,
                                 "n_neurons": n_neurons, "device": self.device})

    def to_dict(self) -> dict:
        """{(method, layer): total seconds}."""
        out: dict = {}
        for r in self.records:
            out[r["method"], r["layer"]] = out.get((r["method"], r["layer"]), 0.0) + r["seconds"]
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=["method", "layer", "seconds", "n_neurons", "device"])

    def table(self) -> pd.DataFrame:
        """Methods as rows, layers as columns, total seconds (the layout of Tables 8-9)."""
        df = self.to_frame()
        return df.pivot_table(index="method", columns="layer", values="seconds", aggfunc="sum")
