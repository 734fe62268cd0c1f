"""The rating app's store: one SQLite file ``CROWD/app.sqlite`` per crowd folder (issue 9, item 4).

SQLite in WAL mode: a submission is one ``BEGIN IMMEDIATE ... COMMIT`` transaction, and the reply is
sent only after the commit returned. What a returned commit survives is the store's *durability*
(:data:`DURABILITY`, ``crowd.app.durability`` / ``neuronaudit serve --durability``):

* ``process`` (default; ``synchronous=NORMAL``): the commit has written the transaction into the
  write-ahead log (the operating system holds it), so it survives ``kill -9``, a crash or any exit of
  the server process. An operating-system crash or power loss may lose the last transactions committed
  before it (never half of one: the store stays consistent), because the log is flushed to the disk
  only at checkpoints.
* ``power`` (``synchronous=FULL``): the commit returns after the log was flushed to the disk, so it
  also survives an operating-system crash or power loss, as far as the disk honours flushes; one flush
  per submission (0.04-8 ms on the development machine's virtual disk) serialises the writers.

While the app serves, checkpoints (copying the log into the database file, with its flushes) run in
a background thread (:meth:`AppStore.start_checkpointer`), not inside a rater's submission; it also
bounds what ``process`` can lose to an OS crash to about the last second of answers.

Tables (the tasks are copied in from ``tasks.parquet`` when the store is created, so the app never
reads the Parquet again and a changed ``tasks.parquet`` is noticed):

| table | key | columns |
|---|---|---|
| ``meta`` | key | value (``owner_token``, ``secret_key``, ``raters_per_task``, ``tasks_digest``, ``created_at``) |
| ``raters`` | rater | token (random, ``secrets.token_urlsafe``), ord |
| ``tasks`` | task | ord, concept, n_images |
| ``items`` | (task, position) | image_id, concept, is_gold, gold_answer (NULL unless gold; never sent to raters) |
| ``assignments`` | (rater, task) | ord (the rater's n-th task) |
| ``answers`` | (rater, task, position) | rating 0/1, submitted_at (ISO 8601 UTC) |
| ``submissions`` | (rater, task) | first_at, last_at, n_submits |

A re-submitted task overwrites the rater's answers (``INSERT ... ON CONFLICT DO UPDATE``): the key
keeps a rater's answer to an image of a task unique. Assignment: task *i* (in ``tasks.parquet``
order) goes to raters ``(i*M + j) mod R`` for ``j < M``: every task gets M different raters and every
rater ``T*M/R`` tasks, give or take one.

Every connection is per thread and kept for the thread's life (the web server's worker threads each
open theirs once).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from neuronaudit import io as nio
from neuronaudit.aggregation import fleiss_kappa
from neuronaudit.crowd.ratings import RATINGS_COLUMNS

__all__ = ["AppStore", "AppSetupError", "StudyTasks", "read_tasks", "export_ratings", "DB_NAME",
           "TASKS_NAME", "EXPORT_NAME", "RATER_NAME", "MAX_IMAGES", "DURABILITY"]

log = logging.getLogger(__name__)

DB_NAME = "app.sqlite"
TASKS_NAME = "tasks.parquet"
EXPORT_NAME = "app_ratings.parquet"
MAX_IMAGES = 15
RATER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
#: an image id that is a plain file name (no folder, no ``..``, no control characters)
_IMAGE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.,+=@-]{0,199}$")
TASK_COLUMNS = ("task", "position", "image_id", "concept", "is_gold", "gold_answer")
#: durability -> SQLite ``synchronous`` setting (module docstring: what each survives)
DURABILITY = {"process": "NORMAL", "power": "FULL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (rater TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, ord INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (task TEXT PRIMARY KEY, ord INTEGER NOT NULL, concept TEXT NOT NULL,
    n_images INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (task TEXT NOT NULL, position INTEGER NOT NULL, image_id TEXT NOT NULL,
    concept TEXT NOT NULL, is_gold INTEGER NOT NULL, gold_answer INTEGER, PRIMARY KEY (task, position));
CREATE TABLE IF NOT EXISTS assignments (rater TEXT NOT NULL, task TEXT NOT NULL, ord INTEGER NOT NULL,
    PRIMARY KEY (rater, task)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS answers (rater TEXT NOT NULL, task TEXT NOT NULL, position INTEGER NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (0, 1)), submitted_at TEXT NOT NULL,
    PRIMARY KEY (rater, task, position)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS submissions (rater TEXT NOT NULL, task TEXT NOT NULL, first_at TEXT NOT NULL,
    last_at TEXT NOT NULL, n_submits INTEGER NOT NULL, PRIMARY KEY (rater, task)) WITHOUT ROWID;
"""


class AppSetupError(ValueError):
    """A crowd folder, tasks file or rater option the app cannot use; the message says what to do."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Task:
    task: str
    ord: int
    concept: str
    image_ids: tuple[str, ...]
    is_gold: tuple[bool, ...] = field(repr=False)
    gold_answer: tuple[int | None, ...] = field(repr=False)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)


@dataclass
class StudyTasks:
    """The tasks of a crowd folder, in ``tasks.parquet`` order."""

    tasks: dict[str, Task]

    @property
    def order(self) -> list[str]:
        return list(self.tasks)

    def digest(self) -> str:
        h = hashlib.sha256()
        for t in self.tasks.values():
            h.update(json.dumps([t.task, t.concept, t.image_ids, t.is_gold, t.gold_answer]).encode())
        return h.hexdigest()


def read_tasks(crowd: str | os.PathLike, check_images: bool = True) -> StudyTasks:
    """Read and check ``CROWD/tasks.parquet`` (and that every image is ``CROWD/images/{image_id}.png``)."""
    crowd = Path(crowd)
    path = crowd / TASKS_NAME
    if not path.is_file():
        raise AppSetupError(f"{path}: no such file; the crowd folder needs the tasks table written by the "
                            "crowd_design rule (run the study with crowd.enabled: true first)")
    try:
        df = nio.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported by name
        raise AppSetupError(f"{path}: cannot be read as Parquet ({e})") from None
    missing = [c for c in TASK_COLUMNS if c not in df.columns]
    if missing:
        raise AppSetupError(f"{path}: missing column(s) {missing}; a tasks table has {list(TASK_COLUMNS)}")
    if df.empty:
        raise AppSetupError(f"{path}: has no rows; there is nothing to rate")
    for c in ("task", "image_id", "concept"):
        bad = df[c].isna().to_numpy() | (df[c].astype(str).str.strip() == "").to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AppSetupError(f"{path}: row {i + 1}, column {c!r} is empty; every row needs a {c}")
    df = df.assign(task=df["task"].astype(str), image_id=df["image_id"].astype(str),
                   concept=df["concept"].astype(str))
    pos = pd.to_numeric(df["position"], errors="coerce")
    bad = ~(pos.notna() & (pos == pos.round()) & (pos >= 1) & (pos <= MAX_IMAGES)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AppSetupError(f"{path}: row {i + 1}, column 'position' is {df['position'].iloc[i]}; positions "
                            f"are whole numbers 1..{MAX_IMAGES}")
    df["position"] = pos.astype(np.int64)
    bad_id = ~df["image_id"].str.fullmatch(_IMAGE_ID).to_numpy(dtype=bool)
    if bad_id.any():
        i = int(np.flatnonzero(bad_id)[0])
        raise AppSetupError(f"{path}: row {i + 1}, image_id {df['image_id'].iloc[i]!r} is not a plain file name "
                            "(letters, digits and _.,+=@- only, no folders); the app serves images/{image_id}.png")
    dup = df.duplicated(["task", "position"]).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise AppSetupError(f"{path}: row {i + 1} repeats task {df['task'].iloc[i]!r} position "
                            f"{df['position'].iloc[i]}; each position of a task holds one image")
    gold = df["is_gold"].fillna(False).astype(bool).to_numpy()
    ans = pd.to_numeric(df["gold_answer"], errors="coerce")
    bad = gold & ~ans.isin([0, 1]).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AppSetupError(f"{path}: row {i + 1} is a gold item without a gold_answer of 0 or 1")
    tasks: dict[str, Task] = {}
    df = df.assign(_gold=gold, _ans=ans, _row=np.arange(len(df)))
    first = df.groupby("task", sort=False)["_row"].min().sort_values()
    for ord_, (name, rows) in enumerate(df.sort_values(["_row"]).groupby("task", sort=False)):
        rows = rows.sort_values("position")
        concepts = rows["concept"].unique()
        if len(concepts) != 1:
            raise AppSetupError(f"{path}: task {name!r} asks about {len(concepts)} concepts {list(concepts)[:3]}; "
                                "a task asks about one concept")
        want = np.arange(1, len(rows) + 1)
        if not np.array_equal(rows["position"].to_numpy(), want):
            raise AppSetupError(f"{path}: task {name!r} has positions {rows['position'].tolist()}; they must "
                                f"be 1..{len(rows)} without gaps")
        tasks[name] = Task(
            task=name, ord=ord_, concept=str(concepts[0]), image_ids=tuple(rows["image_id"]),
            is_gold=tuple(bool(g) for g in rows["_gold"]),
            gold_answer=tuple(int(a) if g else None for a, g in zip(rows["_ans"], rows["_gold"], strict=True)))
    assert list(tasks) == list(first.index)
    if check_images:
        images = crowd / "images"
        ids = sorted({i for t in tasks.values() for i in t.image_ids})
        absent = [i for i in ids if not (images / f"{i}.png").is_file()]
        if absent:
            raise AppSetupError(f"{images}: {len(absent)} of {len(ids)} images are missing (first: {absent[0]}.png); "
                                "every image of tasks.parquet must be there as images/{image_id}.png")
    return StudyTasks(tasks)


def assign(task_order: list[str], raters: list[str], per_task: int) -> list[tuple[str, str]]:
    """(rater, task) pairs: task i gets raters (i*M + j) mod R, j < M (all different when M <= R)."""
    n_r = len(raters)
    if per_task < 1 or per_task > n_r:
        raise AppSetupError(f"--raters-per-task {per_task} needs at least that many raters (there are {n_r}); "
                            "add raters (--raters N or --rater NAME ...) or lower --raters-per-task")
    out = []
    for i, task in enumerate(task_order):
        for j in range(per_task):
            out.append((raters[(i * per_task + j) % n_r], task))
    return out


class AppStore:
    """The app's SQLite store (WAL; ``durability`` "process" or "power", see the module docstring); one
    connection per thread."""

    def __init__(self, crowd: str | os.PathLike, durability: str = "process"):
        if durability not in DURABILITY:
            raise AppSetupError(f"durability {durability!r}: must be one of {sorted(DURABILITY)} "
                                "(crowd.app.durability, neuronaudit serve --durability)")
        self.crowd = Path(crowd).resolve()
        self.path = self.crowd / DB_NAME
        self.durability = durability
        self._local = threading.local()
        # one writer at a time inside this process: SQLite's own busy handler sleeps in steps of up to
        # 100 ms when a lock is taken, which made the slowest submissions wait ~1 s under load
        self._write = threading.Lock()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None

    # ---------------------------------------------------------------- connections
    def conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute(f"PRAGMA synchronous={DURABILITY[self.durability]}")
            c.execute("PRAGMA busy_timeout=30000")
            c.execute("PRAGMA foreign_keys=ON")
            if self._checkpointer is not None:
                c.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
            self._local.conn = c
        return c

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    def start_checkpointer(self, interval: float = 1.0) -> None:
        """Move checkpoints out of the submissions. By default SQLite checkpoints inside the commit that
        takes the log past 1,000 pages (copying it into the database and flushing: several ms inside one
        rater's request). Connections opened from now on do not; instead a daemon thread checks every
        ``interval`` seconds and, if the log changed, checkpoints (PASSIVE: it never blocks a writer).
        A checkpoint flushes the log first, so with durability "process" an operating-system crash can
        lose at most the answers of the last ``interval`` seconds (plus the checkpoint's own time). Call
        before the server's threads open their connections."""
        if self._checkpointer is not None:
            return
        wal = self.path.with_name(self.path.name + "-wal")
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.execute("PRAGMA wal_autocheckpoint=0")

        def stamp() -> tuple[int, int] | None:
            try:
                st = wal.stat()
            except FileNotFoundError:
                return None
            return st.st_size, st.st_mtime_ns

        def loop() -> None:
            own = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            own.execute(f"PRAGMA synchronous={DURABILITY[self.durability]}")
            own.execute("PRAGMA wal_autocheckpoint=0")
            seen = None
            try:
                while not self._stop.wait(interval):
                    now = stamp()
                    if now is not None and now != seen:
                        try:
                            own.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        except sqlite3.Error as err:  # try again next time; never end the thread
                            log.warning("%s: checkpoint failed (%s); retrying in %.1f s", self.path, err, interval)
                            continue
                        seen = stamp()
            finally:
                own.close()

        self._stop.clear()
        self._checkpointer = threading.Thread(target=loop, name="neuronaudit-checkpoint", daemon=True)
        self._checkpointer.start()

    def stop_checkpointer(self) -> None:
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join(10)
            self._checkpointer = None

    # ---------------------------------------------------------------- setup
    @classmethod
    def setup(cls, crowd: str | os.PathLike, raters: int | list[str] | None = None,
              raters_per_task: int | None = None, durability: str = "process") -> AppStore:
        """Create ``CROWD/app.sqlite`` from ``tasks.parquet`` (or reopen it: tokens stay the same).

        ``raters``: a number (raters ``rater01``...), a list of names, or None (reuse; 3 for a new store).
        On an existing store a rater option must name the raters it already has (the assignment is fixed
        once made); move app.sqlite away to start a new round."""
        store = cls(crowd, durability)
        if not store.crowd.is_dir():
            raise AppSetupError(f"{store.crowd}: no such folder; pass the crowd folder results/<study>/crowd")
        tasks = read_tasks(store.crowd)
        if isinstance(raters, int) and not isinstance(raters, bool):
            if raters < 1:
                raise AppSetupError(f"--raters {raters}: need at least one rater")
            width = max(2, len(str(raters)))
            names = [f"rater{k + 1:0{width}d}" for k in range(raters)]
        elif raters is None:
            names = None
        else:
            names = [str(r) for r in raters]
            for r in names:
                if not RATER_NAME.fullmatch(r):
                    raise AppSetupError(f"--rater {r!r}: a rater name is 1-64 letters, digits or _.@- "
                                        "(starting with a letter or digit)")
            if len(set(names)) != len(names):
                raise AppSetupError(f"--rater: names repeat in {names}")
        c = store.conn()
        c.executescript(_SCHEMA)  # IF NOT EXISTS: a no-op on an existing store
        if c.execute("SELECT count(*) FROM meta WHERE key = 'owner_token'").fetchone()[0]:
            store._check_existing(tasks, names, raters_per_task)
            return store
        if names is None:
            names = [f"rater{k + 1:02d}" for k in range(3)]
        per_task = 3 if raters_per_task is None else int(raters_per_task)
        pairs = assign(tasks.order, names, per_task)
        try:
            os.chmod(store.path, 0o600)  # tokens live here
        except OSError:
            pass
        c.execute("BEGIN IMMEDIATE")
        try:
            now = utc_now()
            meta = {"owner_token": secrets.token_urlsafe(24), "secret_key": secrets.token_hex(32),
                    "raters_per_task": str(per_task), "tasks_digest": tasks.digest(), "created_at": now,
                    "crowd": str(store.crowd)}
            c.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            c.executemany("INSERT INTO raters VALUES (?, ?, ?)",
                          [(r, secrets.token_urlsafe(16), k) for k, r in enumerate(names)])
            c.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?)",
                          [(t.task, t.ord, t.concept, t.n_images) for t in tasks.tasks.values()])
            c.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
                          [(t.task, p + 1, t.image_ids[p], t.concept, int(t.is_gold[p]), t.gold_answer[p])
                           for t in tasks.tasks.values() for p in range(t.n_images)])
            counter: dict[str, int] = {}
            rows = []
            for r, t in pairs:
                rows.append((r, t, counter.get(r, 0)))
                counter[r] = counter.get(r, 0) + 1
            c.executemany("INSERT INTO assignments VALUES (?, ?, ?)", rows)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return store

    def _check_existing(self, tasks: StudyTasks, names: list[str] | None, per_task: int | None) -> None:
        meta = self.meta()
        if meta.get("tasks_digest") != tasks.digest():
            raise AppSetupError(f"{self.crowd / TASKS_NAME} changed since {self.path} was created; the store's "
                                "answers belong to the old tasks. Export them (neuronaudit export-ratings), then "
                                f"move {DB_NAME} away to start a new round")
        have = self.rater_names()
        if names is not None and names != have:
            raise AppSetupError(f"{self.path} already has raters {have}; serve it without --raters/--rater "
                                f"(links stay the same), or move {DB_NAME} away to start a new round")
        if per_task is not None and int(per_task) != int(meta["raters_per_task"]):
            raise AppSetupError(f"{self.path} assigns {meta['raters_per_task']} raters per task, not {per_task}; "
                                f"serve it without --raters-per-task, or move {DB_NAME} away to start a new round")

    # ---------------------------------------------------------------- reads
    def meta(self) -> dict[str, str]:
        return dict(self.conn().execute("SELECT key, value FROM meta").fetchall())

    def rater_names(self) -> list[str]:
        return [r for (r,) in self.conn().execute("SELECT rater FROM raters ORDER BY ord")]

    def tokens(self) -> dict[str, str]:
        """token -> rater."""
        return dict(self.conn().execute("SELECT token, rater FROM raters ORDER BY ord").fetchall())

    def load_tasks(self) -> StudyTasks:
        c = self.conn()
        items: dict[str, list] = {}
        for task, pos, image_id, is_gold, gold in c.execute(
                "SELECT task, position, image_id, is_gold, gold_answer FROM items ORDER BY task, position"):
            items.setdefault(task, []).append((pos, image_id, bool(is_gold), gold))
        out = {}
        for task, ord_, concept, _n in c.execute("SELECT task, ord, concept, n_images FROM tasks ORDER BY ord"):
            rows = items[task]
            out[task] = Task(task, ord_, concept, tuple(r[1] for r in rows), tuple(r[2] for r in rows),
                             tuple(r[3] for r in rows))
        return StudyTasks(out)

    def assignments(self) -> dict[str, list[str]]:
        """rater -> their tasks in order."""
        out: dict[str, list[str]] = {r: [] for r in self.rater_names()}
        for r, t in self.conn().execute("SELECT rater, task FROM assignments ORDER BY rater, ord"):
            out[r].append(t)
        return out

    def answers_of(self, rater: str, task: str) -> dict[int, int]:
        """position -> rating of one rater's submitted answers to one task (empty if not submitted)."""
        return dict(self.conn().execute(
            "SELECT position, rating FROM answers WHERE rater = ? AND task = ?", (rater, task)).fetchall())

    def submitted_tasks(self, rater: str) -> set[str]:
        return {t for (t,) in self.conn().execute("SELECT task FROM submissions WHERE rater = ?", (rater,))}

    # ---------------------------------------------------------------- writes
    def submit(self, rater: str, task: str, n_images: int, selected: set[int]) -> str:
        """Store one rater's answers to all ``n_images`` images of ``task`` (1 = selected), replacing an
        earlier submission; durable when this returns. Returns the submission time."""
        now = utc_now()
        rows = [(rater, task, p, int(p in selected), now) for p in range(1, n_images + 1)]
        c = self.conn()
        with self._write:
            self._commit(c, rows, rater, task, now)
        return now

    @staticmethod
    def _commit(c: sqlite3.Connection, rows: list[tuple], rater: str, task: str, now: str) -> None:
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?) ON CONFLICT (rater, task, position) "
                          "DO UPDATE SET rating = excluded.rating, submitted_at = excluded.submitted_at", rows)
            c.execute("INSERT INTO submissions VALUES (?, ?, ?, ?, 1) ON CONFLICT (rater, task) DO UPDATE SET "
                      "last_at = excluded.last_at, n_submits = n_submits + 1", (rater, task, now, now))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- reports
    def answers_frame(self) -> pd.DataFrame:
        """Every stored answer with its item: rater, task, position, image_id, concept, is_gold,
        gold_answer, rating, submitted_at (str)."""
        return pd.read_sql_query(
            "SELECT a.rater, a.task, a.position, i.image_id, i.concept, i.is_gold, i.gold_answer, a.rating, "
            "a.submitted_at FROM answers a JOIN items i ON i.task = a.task AND i.position = a.position "
            "ORDER BY a.task, a.rater, a.position", self.conn())

    def ratings_frame(self) -> pd.DataFrame:
        """The stored answers in the ratings schema of :mod:`neuronaudit.crowd.ratings` (source "app")."""
        a = self.answers_frame()
        df = pd.DataFrame({
            "task": a["task"].astype(object), "image_id": a["image_id"].astype(object),
            "concept": a["concept"].astype(object), "rater": a["rater"].astype(object),
            "rating": a["rating"].astype(np.int8), "source": pd.Series(["app"] * len(a), dtype=object),
            "submitted_at": pd.to_datetime(a["submitted_at"], utc=True, format="ISO8601").astype(
                "datetime64[ns, UTC]"),
        })
        return df[list(RATINGS_COLUMNS)]

    def summary(self) -> dict:
        """The owner page's figures: per rater progress, gold agreement, agreement with the others'
        majority; Fleiss' kappa over the (image, concept) items with at least two ratings."""
        c = self.conn()
        names = self.rater_names()
        assigned = dict(c.execute("SELECT rater, count(*) FROM assignments GROUP BY rater").fetchall())
        done = dict(c.execute("SELECT rater, count(*) FROM submissions GROUP BY rater").fetchall())
        last = dict(c.execute("SELECT rater, max(last_at) FROM submissions GROUP BY rater").fetchall())
        a = self.answers_frame()
        per = {r: {"rater": r, "assigned": int(assigned.get(r, 0)), "submitted": int(done.get(r, 0)),
                   "answers": 0, "gold_n": 0, "gold_agree": float("nan"), "others_n": 0,
                   "others_agree": float("nan"), "last": last.get(r) or ""} for r in names}
        kappa, n_items = float("nan"), 0
        if len(a):
            for r, n in a.groupby("rater").size().items():
                per[r]["answers"] = int(n)
            g = a[a["is_gold"].astype(bool)]
            if len(g):
                ok = (g["rating"] == g["gold_answer"]).groupby(g["rater"]).agg(["size", "mean"])
                for r, row in ok.iterrows():
                    per[r]["gold_n"], per[r]["gold_agree"] = int(row["size"]), float(row["mean"])
            key = ["image_id", "concept"]
            counts = a.groupby(key)["rating"].agg(["sum", "size"]).rename(columns={"sum": "yes", "size": "n"})
            multi = counts[counts["n"] >= 2]
            n_items = len(multi)
            if n_items:
                kappa = fleiss_kappa(multi["yes"].to_numpy(), multi["n"].to_numpy())
                # agreement with the majority of the other raters of the same item (ties left out)
                m = a.join(counts, on=key)
                oth_yes, oth_n = m["yes"] - m["rating"], m["n"] - 1
                has = (oth_n > 0) & (2 * oth_yes != oth_n)
                m = m[has]
                agree = (m["rating"] == (2 * (m["yes"] - m["rating"]) > (m["n"] - 1)).astype(int))
                ok = agree.groupby(m["rater"]).agg(["size", "mean"])
                for r, row in ok.iterrows():
                    per[r]["others_n"], per[r]["others_agree"] = int(row["size"]), float(row["mean"])
        total_assigned = sum(p["assigned"] for p in per.values())
        total_done = sum(p["submitted"] for p in per.values())
        return {"raters": list(per.values()), "assigned": total_assigned, "submitted": total_done,
                "answers": int(len(a)), "kappa": kappa, "kappa_items": n_items,
                "n_tasks": int(c.execute("SELECT count(*) FROM tasks").fetchone()[0])}


def export_ratings(crowd: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, int]:
    """Write the app's answers as a ratings Parquet (default ``CROWD/app_ratings.parquet``), atomically;
    return (path, rows). The file is an input of :func:`neuronaudit.crowd.ratings.ingest_ratings`."""
    crowd = Path(crowd)
    if not (crowd / DB_NAME).is_file():
        raise AppSetupError(f"{crowd / DB_NAME}: no such file; the app has not been started on {crowd} "
                            "(neuronaudit serve CROWD), so there are no answers to export")
    store = AppStore(crowd)
    try:
        df = store.ratings_frame()
        meta = store.meta()
    finally:
        store.close()
    path = Path(out) if out is not None else crowd / EXPORT_NAME
    nio.write_table(df, path, meta={"table": "ratings", "columns": list(RATINGS_COLUMNS), "source": "app",
                                    "store": str(crowd / DB_NAME), "tasks_digest": meta.get("tasks_digest"),
                                    "exported_at": utc_now()})
    return path, len(df)
