"""Per-job logs: every script sends logging and stderr (tqdm bars included) to its Snakemake log.

The console is not left silent meanwhile: every few seconds (``NEURONAUDIT_PROGRESS`` seconds,
default 10; 0 turns it off) the job's latest log line -- usually its progress bar -- is echoed to
the console as one line tagged with the job (``[extract_activations/lite0] extract: 41%|...``), a
"still running" line appears when a step prints nothing for a minute, and warnings and errors are
echoed at once. The full log stays in ``logs/<study>/<rule>/...``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def job_tag(path: str) -> str:
    """``logs/<study>/<rule>/<wildcards>.log`` -> ``<rule>/<wildcards>``."""
    parts = Path(path).with_suffix("").parts
    if "logs" in parts:
        i = len(parts) - 1 - parts[::-1].index("logs")
        if len(parts) > i + 2:
            return "/".join(parts[i + 2 :])
    return Path(path).stem


class ConsoleEcho:
    """A text stream that writes everything to the log file and echoes a throttled line to a console."""

    def __init__(self, log: TextIO, console: TextIO, tag: str, interval: float, quiet_after: float = 60.0) -> None:
        self._log, self._console, self.tag = log, console, tag
        self.interval, self.quiet_after = interval, quiet_after
        self._latest = ""
        self._shown = ""
        self._t0 = self._last_shown = time.monotonic()
        self.echoed = 0
        if interval > 0:
            threading.Thread(target=self._loop, daemon=True, name="console-echo").start()

    def write(self, text: str) -> int:
        self._log.write(text)
        for piece in re.split(r"[\r\n]", text):
            piece = _CONTROL.sub("", piece).strip()
            if piece:
                self._latest = piece
        return len(text)

    def echo(self, line: str) -> None:
        line = line if len(line) <= 160 else line[:157] + "..."
        try:
            self._console.write(f"[{self.tag}] {line}\n")
            self._console.flush()
        except (OSError, ValueError):  # console gone: the log file still has everything
            return
        self._last_shown = time.monotonic()
        self.echoed += 1

    def tick(self) -> None:
        """Echo the latest line if it changed, or a heartbeat after ``quiet_after`` seconds of silence."""
        latest, now = self._latest, time.monotonic()
        if latest and latest != self._shown:
            self._shown = latest
            self.echo(latest)
        elif now - self._last_shown >= self.quiet_after:
            self.echo(f"still running ({now - self._t0:.0f} s); log: {getattr(self._log, 'name', '')}")

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            self.tick()

    def flush(self) -> None:
        self._log.flush()

    def fileno(self) -> int:
        return self._log.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self._log, "encoding", "utf-8")


def setup_job_log(path: str | None, level: int = logging.INFO) -> logging.Logger:
    """Route stderr and the ``neuronaudit`` loggers to ``path`` (line-buffered), with timestamps;
    echo progress and warnings to the console (see the module docstring)."""
    console = sys.__stderr__
    handlers: list[logging.Handler] = []
    if path:
        log_file = open(path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        interval = float(os.environ.get("NEURONAUDIT_PROGRESS", "10"))
        sys.stderr = ConsoleEcho(log_file, console, job_tag(path), interval) if console is not None else log_file
        if console is not None:
            loud = logging.StreamHandler(console)
            loud.setLevel(logging.WARNING)
            loud.setFormatter(logging.Formatter(f"[{job_tag(path)}] %(levelname)s: %(message)s"))
            handlers.append(loud)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler, *handlers]
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

    def __exit__(self, exc_type, exc, tb):
        self.seconds = time.perf_counter() - self.t0
        if exc_type is None:
            self.log.info("%s done in %.1f s", self.what, self.seconds)
        else:
            self.log.error("%s FAILED after %.1f s: %s: %s", self.what, self.seconds, exc_type.__name__, exc)
