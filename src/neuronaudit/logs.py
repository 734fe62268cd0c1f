"""Per-job logs: every script sends logging and stderr (tqdm bars included) to its Snakemake log."""

from __future__ import annotations

import logging
import sys
import time


def setup_job_log(path: str | None, level: int = logging.INFO) -> logging.Logger:
    """Route stderr and the ``neuronaudit`` loggers to ``path`` (line-buffered), with timestamps."""
    if path:
        sys.stderr = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
    return logging.getLogger("neuronaudit.job")


class timed:
    """Context manager logging the wall time of a step."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log, self.what = log, what

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.log.info("%s ...", self.what)
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        self.log.info("%s done in %.1f s", self.what, self.seconds)
