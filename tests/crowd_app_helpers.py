"""Shared by the rating app's tests and its benchmark: a small crowd folder (tasks.parquet + PNGs), the
app started as a real server process on loopback, and a plain HTTP rater client (stdlib http.client,
keep-alive, one session cookie)."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CONCEPTS = ("dog", "striped", "red", "wheel", "sky", "grass", "water", "text")


def make_crowd(folder: Path, n_tasks: int = 6, images_per_task: int = 15, n_images: int = 40,
               gold_every: int = 3, seed: int = 0) -> pd.DataFrame:
    """A crowd folder: ``tasks.parquet`` (contract columns) and ``images/{image_id}.png`` (tiny PNGs of
    distinct colours). Every ``gold_every``-th task holds one gold item at its last position. Returns the
    tasks frame."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    ids = [f"img{k:04d}" for k in range(n_images)]
    for k, i in enumerate(ids):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (24, 24), colour)
        im.putpixel((k % 24, (k // 24) % 24), (255, 255, 255))
        im.save(images / f"{i}.png")
    rows = []
    for t in range(n_tasks):
        concept = CONCEPTS[t % len(CONCEPTS)]
        chosen = rng.choice(n_images, size=images_per_task, replace=False)
        for p, j in enumerate(chosen, start=1):
            gold = gold_every > 0 and t % gold_every == 0 and p == images_per_task
            rows.append({"task": f"t{t + 1:06d}", "position": p, "image_id": ids[j], "concept": concept,
                         "is_gold": gold, "gold_answer": (int(j % 2) if gold else None)})
    df = pd.DataFrame(rows)
    df["position"] = df["position"].astype(np.int64)
    df["gold_answer"] = df["gold_answer"].astype("Int8")
    df.to_parquet(folder / "tasks.parquet", index=False)
    return df


@dataclass
class AppServer:
    """``neuronaudit serve CROWD --port 0`` as a subprocess; ``links`` and ``owner`` parsed from its output."""

    crowd: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    base: str = ""
    links: dict[str, str] = field(default_factory=dict)
    owner: str = ""
    log: Path | None = None

    def start(self, timeout: float = 60.0) -> AppServer:
        self.log = self.crowd / f"serve.{time.time_ns()}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "neuronaudit", "serve", str(self.crowd), "--port", "0",
                                          *self.args], stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text()
            m = re.search(r"^serving on (\S+)", text, re.M)
            if m:
                self.base = m.group(1)
                self.links = dict(re.findall(r"^rater (\S+): (\S+)$", text, re.M))
                self.owner = re.search(r"^owner: (\S+)$", text, re.M).group(1)
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the server did not start in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Client:
    """One browser-like HTTP client: a keep-alive connection and the cookies the server sets."""

    def __init__(self, base: str, timeout: float = 30.0):
        u = urlsplit(base)
        self.host, self.port, self.timeout = u.hostname, u.port, timeout
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | list | str | None = None,
                headers: dict | None = None) -> tuple[int, dict, bytes]:
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = body if isinstance(body, str) else urlencode(body, doseq=True)
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt or method != "GET":  # never resend a POST whose fate is unknown
                    raise
        for k, v in resp.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def path_of(url: str) -> str:
    return urlsplit(url).path


class Rater(Client):
    """A rater with their link: reads task pages, submits answers."""

    def __init__(self, link: str, timeout: float = 30.0):
        super().__init__(link, timeout)
        self.root = path_of(link)  # /r/<token>/

    def task_page(self, task: str) -> tuple[int, str]:
        status, _, body = self.request("GET", f"{self.root}task/{task}")
        return status, body.decode()

    def csrf(self, task: str) -> str:
        status, html = self.task_page(task)
        assert status == 200, (status, html[:500])
        return re.search(r'name="csrf" value="([^"]+)"', html).group(1)

    def my_tasks(self) -> list[str]:
        status, _, body = self.request("GET", self.root)
        assert status == 200, status
        return re.findall(r'href="[^"]*/task/([^"/]+)"', body.decode())

    def submit(self, task: str, selected, n: int, csrf: str, json: bool = True) -> tuple[int, dict, bytes]:
        form = {"csrf": csrf, "n": str(n), "sel": [str(p) for p in selected]}
        hdrs = {"Accept": "application/json"} if json else {}
        return self.request("POST", f"{self.root}task/{task}", form, hdrs)
