"""The rating app (`neuronaudit serve`, issue 9 item 4) over HTTP on loopback: a real server process on
a free port, its own crowd folder (tasks.parquet + PNGs made here). Tokens, CSRF, form validation, path
traversal, resubmission, a rater's privacy, the owner page, the export and its round trip through
crowd.ratings.ingest_ratings, and simulated raters with known truth answering through HTTP (item 7)."""

from __future__ import annotations

import io
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import types

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from waitress import wasyncore

from neuronaudit import cli
from neuronaudit.aggregation import fleiss_kappa
from neuronaudit.config import load_config
from neuronaudit.crowd import app as app_mod
from neuronaudit.crowd.ratings import RATINGS_COLUMNS, ingest_ratings, read_store
from neuronaudit.crowd.store import AppSetupError, AppStore, assign, export_ratings, read_tasks

from .crowd_app_helpers import REPO, AppServer, Client, Rater, make_crowd, path_of


def _main(capsys, *args) -> tuple[int, str, str]:
    """The CLI in this process (fast); ``_cli`` runs it as a user does."""
    rc = cli.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _cli(*args):
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "neuronaudit", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _answers(crowd) -> pd.DataFrame:
    with sqlite3.connect(crowd / "app.sqlite") as c:
        return pd.read_sql_query("SELECT * FROM answers ORDER BY rater, task, position", c)


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crowd")
    make_crowd(folder, n_tasks=6, n_images=40, gold_every=3)
    return folder


@pytest.fixture(scope="module")
def server(crowd):
    with AppServer(crowd, ("--raters", "4", "--raters-per-task", "3")) as s:
        yield s


# ------------------------------------------------------------------ setup, tasks, assignment

def test_assignment_gives_every_task_m_distinct_raters_and_balances_load():
    raters = [f"r{k}" for k in range(7)]
    pairs = assign([f"t{k}" for k in range(40)], raters, 3)
    by_task = pd.DataFrame(pairs, columns=["rater", "task"]).groupby("task")["rater"]
    assert (by_task.nunique() == 3).all() and (by_task.size() == 3).all()
    load = pd.Series([r for r, _ in pairs]).value_counts()
    assert len(load) == 7 and load.max() - load.min() <= 1
    with pytest.raises(AppSetupError, match="needs at least that many raters"):
        assign(["t1"], ["a", "b"], 3)


@pytest.mark.parametrize("breakage, message", [
    (lambda df: df.assign(image_id=df["image_id"].where(df.index != 4, "../../etc/passwd")), r"row 5, image_id .* not a plain file name"),
    (lambda df: df.assign(image_id=df["image_id"].where(df.index != 2, "/abs/x")), r"row 3, image_id"),
    (lambda df: df.assign(position=df["position"].where(df.index != 1, 1)), r"row 2 repeats task 't000001' position 1"),
    (lambda df: df.assign(position=df["position"].where(df.index != 0, 16)), r"row 1, column 'position' is 16"),
    (lambda df: df.assign(concept=df["concept"].where(df.index != 3, "cat")), r"task 't000001' asks about 2 concepts"),
    (lambda df: df.assign(is_gold=df.index == 0, gold_answer=pd.Series([None] * len(df), dtype="Int8")), r"row 1 is a gold item without"),
    (lambda df: df.drop(columns=["concept"]), r"missing column\(s\) \['concept'\]"),
    (lambda df: df.assign(image_id=df["image_id"].where(df.index != 7, "nosuchimage")), r"images are missing \(first: nosuchimage.png\)"),
])
def test_bad_tasks_tables_are_refused_naming_the_row(tmp_path, breakage, message):
    df = make_crowd(tmp_path, n_tasks=2, n_images=20)
    breakage(df).to_parquet(tmp_path / "tasks.parquet", index=False)
    with pytest.raises(AppSetupError, match=message):
        read_tasks(tmp_path)


def test_serve_setup_keeps_tokens_and_refuses_changed_raters_or_tasks(tmp_path, capsys):
    make_crowd(tmp_path, n_tasks=4, n_images=20)
    first = _cli("serve", str(tmp_path), "--rater", "ann", "--rater", "bob", "--raters-per-task", "2", "--setup-only")
    assert first.returncode == 0, first.stderr
    links = dict(re.findall(r"^rater (\S+): (\S+)$", first.stdout, re.M))
    assert set(links) == {"ann", "bob"} and len(set(links.values())) == 2
    assert all(re.fullmatch(r"http://127\.0\.0\.1:8765/r/[A-Za-z0-9_-]{20,}/", u) for u in links.values())
    owner = re.search(r"^owner: (\S+)$", first.stdout, re.M).group(1)
    rc, out, err = _main(capsys, "serve", str(tmp_path), "--setup-only")
    assert rc == 0, err
    assert dict(re.findall(r"^rater (\S+): (\S+)$", out, re.M)) == links
    assert re.search(r"^owner: (\S+)$", out, re.M).group(1) == owner
    assert (tmp_path / "app.sqlite").stat().st_mode & 0o077 == 0  # the tokens are not world-readable
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--raters", "3", "--setup-only")
    assert rc == 1 and "already has raters ['ann', 'bob']" in err
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--raters-per-task", "1", "--setup-only")
    assert rc == 1 and "assigns 2 raters per task, not 1" in err
    make_crowd(tmp_path, n_tasks=5, n_images=20)  # a new design in the same folder
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--setup-only")
    assert rc == 1 and "tasks.parquet changed since" in err
    rc, _, err = _main(capsys, "serve", str(tmp_path / "nope"), "--setup-only")
    assert rc == 1 and "no such folder" in err
    rc, _, err = _main(capsys, "serve", str(tmp_path / "nope"), "--rater", "../x", "--setup-only")
    assert rc == 1 and "no such folder" in err
    (tmp_path / "app.sqlite").rename(tmp_path / "old.sqlite")
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--rater", "a/b", "--setup-only")
    assert rc == 1 and "a rater name is 1-64 letters" in err
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--raters", "2", "--raters-per-task", "3", "--setup-only")
    assert rc == 1 and "needs at least that many raters" in err


def test_binds_loopback_unless_told(server):
    assert server.base.startswith("http://127.0.0.1:")


# ------------------------------------------------------------------ tokens and CSRF

def test_wrong_or_missing_token_is_refused(server):
    c = Client(server.base)
    good = path_of(next(iter(server.links.values())))
    task = Rater(next(iter(server.links.values()))).my_tasks()[0]
    for path in ("/r/wrongtoken/", "/r/wrongtoken/next", f"/r/wrongtoken/task/{task}", f"/r/wrongtoken/task/{task}/img/1",
                 "/r/%20/", good[:-3] + "/", "/owner/wrongtoken/", "/owner/wrongtoken/app_ratings.parquet",
                 good.replace("/r/", "/owner/")):
        status, _, body = c.request("GET", path)
        assert status == 403, (path, status)
        assert b"<img" not in body
    for path in ("/r//", "/r/", "/owner/"):
        assert c.request("GET", path)[0] in (403, 404)
    status, _, _ = c.request("POST", f"/r/wrongtoken/task/{task}", {"csrf": "x", "n": "15", "sel": ["1"]})
    assert status == 403


def test_task_not_assigned_is_not_found(server):
    tokens = list(server.links.items())
    assigned = {name: set(Rater(link).my_tasks()) for name, link in tokens}
    everything = set().union(*assigned.values())
    name, link = tokens[0]
    not_mine = sorted(everything - assigned[name])
    assert not_mine, "fixture: every rater has every task"
    r = Rater(link)
    csrf = r.csrf(sorted(assigned[name])[0])
    assert r.task_page(not_mine[0])[0] == 404
    assert r.task_page("t999999")[0] == 404
    assert r.request("GET", f"{r.root}task/{not_mine[0]}/img/1")[0] == 404
    before = _answers(server.crowd)
    assert r.submit(not_mine[0], [1], 15, csrf)[0] == 404
    pd.testing.assert_frame_equal(_answers(server.crowd), before)


def test_csrf_missing_wrong_or_from_another_session_is_refused(server):
    link = list(server.links.values())[1]
    r = Rater(link)
    task = r.my_tasks()[0]
    csrf = r.csrf(task)
    before = _answers(server.crowd)
    assert r.submit(task, [1], 15, "")[0] == 403
    assert r.submit(task, [1], 15, csrf[:-2] + "xx")[0] == 403
    form = {"n": "15", "sel": ["1"]}
    assert r.request("POST", f"{r.root}task/{task}", form, {"Accept": "application/json"})[0] == 403
    stranger = Rater(link)  # same link, no session cookie: a forged cross-site form
    assert stranger.submit(task, [1], 15, csrf)[0] == 403
    other = Rater(link)
    other.csrf(task)  # a session of its own, but it posts the first session's token
    assert other.submit(task, [1], 15, csrf)[0] == 403
    pd.testing.assert_frame_equal(_answers(server.crowd), before)
    status, _, body = r.submit(task, [2], 15, csrf)
    assert status == 200, body
    assert r.request("GET", f"{r.root}task/{task}")[1]["cache-control"] == "no-store"


@pytest.mark.parametrize("form, why", [
    ({"sel": ["0"]}, "not one of 1..15"), ({"sel": ["16"]}, "not one of 1..15"), ({"sel": ["abc"]}, "not one of"),
    ({"sel": ["-1"]}, "not one of"), ({"sel": ["1", "1"]}, "selected twice"), ({"sel": ["１"]}, "not one of"),
    ({"sel": ["3"], "n": "14"}, "this task has 15"), ({"sel": ["3"], "is_gold": "1"}, "Unexpected form field"),
    ({"sel": ["3"], "n": None}, "this task has 15"),
])
def test_invalid_forms_are_refused_and_change_nothing(server, form, why):
    r = Rater(list(server.links.values())[2])
    task = r.my_tasks()[0]
    body = {"csrf": r.csrf(task), "n": "15", **form}
    body = {k: v for k, v in body.items() if v is not None}
    before = _answers(server.crowd)
    status, _, payload = r.request("POST", f"{r.root}task/{task}", body, {"Accept": "application/json"})
    assert status == 400, payload
    assert why in payload.decode()
    pd.testing.assert_frame_equal(_answers(server.crowd), before)


def test_oversized_or_wrong_method_requests_are_refused(server):
    r = Rater(list(server.links.values())[2])
    task = r.my_tasks()[0]
    csrf = r.csrf(task)
    before = _answers(server.crowd)
    status, _, _ = r.request("POST", f"{r.root}task/{task}", {"csrf": csrf, "n": "15", "sel": ["1"] * 20000})
    assert status == 413
    assert r.request("PUT", f"{r.root}task/{task}", {"csrf": csrf, "n": "15"})[0] == 405
    assert r.request("DELETE", f"{r.root}task/{task}")[0] == 405
    pd.testing.assert_frame_equal(_answers(server.crowd), before)


# ------------------------------------------------------------------ files

def test_images_are_served_only_by_task_and_position_never_outside_images(server, crowd):
    r = Rater(list(server.links.values())[0])
    task = r.my_tasks()[0]
    status, headers, body = r.request("GET", f"{r.root}task/{task}/img/2")
    assert status == 200 and headers["content-type"] == "image/png"
    image_id = read_tasks(crowd).tasks[task].image_ids[1]
    assert body == (crowd / "images" / f"{image_id}.png").read_bytes()
    (crowd / "secret.txt").write_text("SECRET-CONTENT")
    root = r.root
    attacks = [
        f"{root}task/{task}/img/..%2F..%2Fapp.sqlite", f"{root}task/{task}/img/%2Fetc%2Fpasswd",
        f"{root}task/{task}/img/0", f"{root}task/{task}/img/16", f"{root}task/{task}/img/-1",
        f"{root}task/..%2F..%2Fsecret.txt/img/1", f"{root}task/%2Fetc%2Fpasswd/img/1",
        f"{root}img/..%2Fsecret.txt", f"{root}..%2F..%2Fsecret.txt", f"{root}../../secret.txt",
        "/static/..%2F..%2F..%2Fsecret.txt", "/static/..%2Fstore.py", "/static/../store.py", "/static/%2Fetc%2Fpasswd",
        "/static//etc/passwd", "/static/..%252Fstore.py", "/images/" + image_id + ".png", "/secret.txt",
        "/app.sqlite", "/tasks.parquet", "/%2Fetc%2Fpasswd", "//etc/passwd",
    ]
    for path in attacks:
        status, headers, body = r.request("GET", path)
        for _ in range(3):  # a redirect is no file either: follow it
            if status not in (301, 302, 303, 307, 308):
                break
            status, headers, body = r.request("GET", path_of(headers["location"]))
        assert status in (400, 403, 404), (path, status)
        assert b"SECRET-CONTENT" not in body and b"SQLite format" not in body and b"root:" not in body
    assert r.request("GET", "/static/app.js")[0] == 200


def test_gold_answers_and_image_ids_are_never_sent_to_raters(server, crowd):
    tasks = read_tasks(crowd).tasks
    gold_tasks = [t for t, v in tasks.items() if any(v.is_gold)]
    assert gold_tasks
    for link in server.links.values():
        r = Rater(link)
        for task in r.my_tasks():
            status, html = r.task_page(task)
            assert status == 200
            low = html.lower()
            assert "gold" not in low and "is_gold" not in low
            for image_id in tasks[task].image_ids:
                assert image_id not in html
            assert f"Select all the images that contain: <strong class=\"concept\" id=\"concept\">{tasks[task].concept}" in html
        status, _, body = r.request("GET", r.root)
        assert status == 200 and b"gold" not in body.lower()


# ------------------------------------------------------------------ answers

def test_resubmitting_updates_never_duplicates_and_raters_see_only_their_own(server):
    names = list(server.links)
    a, b = Rater(server.links[names[0]]), Rater(server.links[names[1]])
    shared = sorted(set(a.my_tasks()) & set(b.my_tasks()))[0]
    csrf = a.csrf(shared)
    status, _, body = a.submit(shared, [1, 2, 15], 15, csrf)
    assert status == 200, body
    status, headers, _ = a.submit(shared, [3], 15, csrf, json=False)  # a browser form: redirected on
    assert status == 303 and (f"{a.root}task/" in headers["location"] or headers["location"].endswith("/done"))
    ans = _answers(server.crowd)
    mine = ans[(ans["rater"] == names[0]) & (ans["task"] == shared)]
    assert len(mine) == 15 and mine["position"].tolist() == list(range(1, 16))
    assert mine.set_index("position")["rating"].to_dict() == {p: int(p == 3) for p in range(1, 16)}
    with sqlite3.connect(server.crowd / "app.sqlite") as c:
        n = c.execute("SELECT n_submits FROM submissions WHERE rater=? AND task=?", (names[0], shared)).fetchone()[0]
    assert n >= 2
    _, html_a = a.task_page(shared)
    assert re.findall(r'value="(\d+)" id="sel\d+" checked', html_a) == ["3"]
    _, html_b = b.task_page(shared)
    b_own = ans[(ans["rater"] == names[1]) & (ans["task"] == shared) & (ans["rating"] == 1)]["position"]
    assert re.findall(r'value="(\d+)" id="sel\d+" checked', html_b) == [str(p) for p in sorted(b_own)]
    assert "task " in html_a and re.search(r"task \d+ of \d+", html_a)


def test_progress_counts_submitted_tasks(tmp_path):
    make_crowd(tmp_path, n_tasks=5, n_images=20)
    with AppServer(tmp_path, ("--raters", "1", "--raters-per-task", "1")) as s:
        r = Rater(next(iter(s.links.values())))
        tasks = r.my_tasks()
        assert len(tasks) == 5
        status, headers, _ = r.request("GET", f"{r.root}next")
        assert status == 303 and headers["location"].endswith(f"/task/{tasks[0]}")
        csrf = r.csrf(tasks[0])
        for k, task in enumerate(tasks):
            _, html = r.task_page(task)
            assert f"task {k + 1} of 5" in html and f"{k} done" in html
            status, headers, _ = r.submit(task, [k + 1], 15, csrf, json=False)
            assert status == 303
        assert headers["location"].endswith("/done")
        status, _, body = r.request("GET", f"{r.root}done")
        assert status == 200 and b"5 of 5 tasks done" in body and b"All done" in body


# ------------------------------------------------------------------ owner and export

def test_owner_page_shows_progress_and_the_same_kappa_as_the_library(server):
    names = list(server.links)
    rng = np.random.default_rng(3)
    for name in names:
        r = Rater(server.links[name])
        tasks = r.my_tasks()
        csrf = r.csrf(tasks[0])
        for task in tasks[:3]:
            assert r.submit(task, sorted(rng.choice(15, 5, replace=False) + 1), 15, csrf)[0] == 200
    status, _, body = Client(server.base).request("GET", path_of(server.owner))
    assert status == 200
    html = body.decode()
    ans = _answers(server.crowd)
    with sqlite3.connect(server.crowd / "app.sqlite") as c:
        items = pd.read_sql_query("SELECT task, position, image_id, concept FROM items", c)
    m = ans.merge(items, on=["task", "position"])
    g = m.groupby(["image_id", "concept"])["rating"].agg(["sum", "size"])
    g = g[g["size"] >= 2]
    want = fleiss_kappa(g["sum"].to_numpy(), g["size"].to_numpy())
    shown = float(re.search(r"Fleiss' kappa so far: (-?[0-9.]+)", html).group(1))
    assert shown == pytest.approx(want, abs=5e-4)
    assert f"over {len(g)} images" in html
    with sqlite3.connect(server.crowd / "app.sqlite") as c:
        done = dict(c.execute("SELECT rater, count(*) FROM submissions GROUP BY rater").fetchall())
    for name in names:
        assert re.search(rf"<tr><td>{name}</td><td>{done[name]}</td>", html), name


def test_export_schema_round_trips_through_ingest_and_matches_the_download(server, tmp_path, capsys):
    r = Rater(list(server.links.values())[3])
    task = r.my_tasks()[-1]
    assert r.submit(task, [4, 5], 15, r.csrf(task))[0] == 200
    out = tmp_path / "export.parquet"
    proc = _cli("export-ratings", str(server.crowd), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(out)
    assert tuple(df.columns) == RATINGS_COLUMNS
    schema = pq.read_schema(out)
    assert str(schema.field("rating").type) == "int8"
    assert str(schema.field("submitted_at").type) == "timestamp[ns, tz=UTC]"
    for c in ("task", "image_id", "concept", "rater", "source"):
        assert str(schema.field(c).type) == "string", c
    assert (df["source"] == "app").all() and df["submitted_at"].notna().all()
    ans = _answers(server.crowd)
    assert len(df) == len(ans) and not df.duplicated(["task", "image_id", "concept", "rater"]).any()
    assert f"{out}: {len(df)} ratings" in proc.stdout
    # the owner's download is the same table
    status, headers, body = Client(server.base).request("GET", path_of(server.owner) + "app_ratings.parquet")
    assert status == 200 and "app_ratings.parquet" in headers["content-disposition"]
    down = pd.read_parquet(io.BytesIO(body))
    pd.testing.assert_frame_equal(down.reset_index(drop=True), df.reset_index(drop=True), check_dtype=False)
    # ingestion: everything added once, then nothing
    store = tmp_path / "ratings.parquet"
    first = ingest_ratings([out], store)
    assert first[0]["ratings_added"] == len(df) and first[0]["duplicate"] == 0
    again = ingest_ratings([out], store)
    assert again[0]["ratings_added"] == 0 and again[0]["duplicate"] == len(df)
    back = read_store(store)
    key = ["task", "image_id", "concept", "rater"]
    pd.testing.assert_frame_equal(back.sort_values(key).reset_index(drop=True),
                                  df.sort_values(key).reset_index(drop=True), check_dtype=False)
    # default path
    rc, out, _ = _main(capsys, "export-ratings", str(server.crowd))
    assert rc == 0 and (server.crowd / "app_ratings.parquet").is_file() and "app_ratings.parquet: " in out
    rc, _, err = _main(capsys, "export-ratings", str(tmp_path))
    assert rc == 1 and "the app has not been started" in err


# ------------------------------------------------------------------ simulated raters through HTTP (item 7)

def test_simulated_raters_answer_through_http_and_the_export_gives_back_exactly_their_answers(tmp_path):
    tasks_df = make_crowd(tmp_path, n_tasks=12, n_images=60, gold_every=4, seed=5)
    rng = np.random.default_rng(11)
    items = tasks_df[["image_id", "concept"]].drop_duplicates()
    truth = {(i, c): int(rng.random() < 0.4) for i, c in items.itertuples(index=False)}
    eta = {"rater01": 0.0, "rater02": 0.1, "rater03": 0.25, "rater04": 0.4}
    given = []
    with AppServer(tmp_path, ("--raters", "4", "--raters-per-task", "3")) as s:
        assert set(s.links) == set(eta)
        for name, link in s.links.items():
            r = Rater(link)
            tasks = r.my_tasks()
            csrf = r.csrf(tasks[0])
            for task in tasks:
                rows = tasks_df[tasks_df["task"] == task].sort_values("position")
                answer = []
                for p, i, c in rows[["position", "image_id", "concept"]].itertuples(index=False):
                    seen = truth[(i, c)] ^ int(rng.random() < eta[name])
                    given.append((task, i, c, name, seen))
                    if seen:
                        answer.append(int(p))
                status, _, body = r.submit(task, answer, len(rows), csrf)
                assert status == 200, body
    out = tmp_path / "sim.parquet"
    path, n = export_ratings(tmp_path, out)
    df = pd.read_parquet(path)
    want = pd.DataFrame(given, columns=["task", "image_id", "concept", "rater", "rating"])
    assert n == len(want) == 12 * 3 * 15
    key = ["task", "image_id", "concept", "rater"]
    got = df[[*key, "rating"]].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want.sort_values(key).reset_index(drop=True), check_dtype=False)
    # the error rates show through: the perfect rater matches the truth, the worst one least
    df["truth"] = [truth[(i, c)] for i, c in zip(df["image_id"], df["concept"], strict=True)]
    acc = (df["rating"] == df["truth"]).groupby(df["rater"]).mean()
    assert acc["rater01"] == 1.0 and acc["rater04"] < acc["rater02"]


def test_store_setup_directly_defaults_to_three_raters(tmp_path):
    make_crowd(tmp_path, n_tasks=3, n_images=20)
    store = AppStore.setup(tmp_path)
    assert store.rater_names() == ["rater01", "rater02", "rater03"]
    assert all(len(v) == 3 for v in store.assignments().values())
    store.close()


# ------------------------------------------------------------------ durability, checkpoints, the server loop

def test_durability_modes_set_sqlite_synchronous_and_the_config_defaults_are_the_apps(tmp_path, capsys):
    make_crowd(tmp_path, n_tasks=2, n_images=20)
    for mode, level in (("process", 1), ("power", 2)):  # PRAGMA synchronous: 1 = NORMAL, 2 = FULL
        store = AppStore.setup(tmp_path, raters=3, durability=mode)
        c = store.conn()
        assert c.execute("PRAGMA synchronous").fetchone()[0] == level
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        store.close()
    with pytest.raises(AppSetupError, match="durability 'disk': must be one of"):
        AppStore(tmp_path, durability="disk")
    # the schema's defaults (config.yaml without its crowd.app line) are the app's own defaults
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["crowd"].pop("app", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert load_config(tmp_path / "c.yaml")["crowd"]["app"] == {"durability": app_mod.DURABILITY_DEFAULT,
                                                                 "threads": app_mod.THREADS}
    # serve reads crowd.app from --configfile; its flags override; a bad value names the key
    cfg["crowd"]["app"] = {"durability": "power", "threads": 2}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    rc, out, err = _main(capsys, "serve", str(tmp_path), "--setup-only", "--configfile", str(tmp_path / "p.yaml"))
    assert rc == 0 and "(durability power)" in out, err
    rc, out, err = _main(capsys, "serve", str(tmp_path), "--setup-only", "--durability", "process",
                         "--configfile", str(tmp_path / "p.yaml"))
    assert rc == 0 and "(durability process)" in out, err
    rc, out, _ = _main(capsys, "serve", str(tmp_path), "--setup-only")
    assert rc == 0 and f"(durability {app_mod.DURABILITY_DEFAULT})" in out
    cfg["crowd"]["app"] = {"durability": "disk"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--setup-only", "--configfile", str(tmp_path / "bad.yaml"))
    assert rc == 1 and "crowd.app.durability" in err
    rc, _, err = _main(capsys, "serve", str(tmp_path), "--threads", "0")
    assert rc == 1 and "--threads 0" in err


def test_checkpointer_moves_answers_into_the_database_file_outside_the_commits(tmp_path):
    make_crowd(tmp_path, n_tasks=4, n_images=20)
    store = AppStore.setup(tmp_path, raters=3, raters_per_task=3)
    store.start_checkpointer(interval=0.05)
    tasks = store.assignments()["rater01"]
    assert store.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # not inside a submission

    def in_db_file() -> int:
        """answers in app.sqlite alone, without its write-ahead log: what checkpoints copied there
        (-1: the copy caught a checkpoint half-way)"""
        copy = tmp_path / "copy.sqlite"
        copy.write_bytes(store.path.read_bytes())
        try:
            with sqlite3.connect(copy) as c:
                return c.execute("SELECT count(*) FROM answers").fetchone()[0]
        except sqlite3.DatabaseError:
            return -1
        finally:
            copy.unlink()

    try:
        time.sleep(0.2)  # the checkpointer copies the setup (tables, no answers) into the file
        before = in_db_file()
        for t in tasks:
            store.submit("rater01", t, 15, {1, 2})
        deadline = time.monotonic() + 30
        while in_db_file() != before + 15 * len(tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert before == 0 and in_db_file() == 15 * len(tasks)
    finally:
        store.stop_checkpointer()
        store.close()


def test_server_loop_does_not_watch_a_running_requests_socket_for_writing():
    """waitress's main thread polled select() ~300 times per submission while a worker held the output
    buffer's lock (app._Channel); the connection is watched again once the request is done, or when the
    worker waits for the buffer to drain."""
    ch = object.__new__(app_mod._Channel)
    ch.adj = types.SimpleNamespace(outbuf_high_watermark=1000)
    ch.will_close = ch.close_when_flushed = False
    ch.requests, ch.total_outbufs_len = ["running"], 10
    assert not ch.writable()
    ch.total_outbufs_len = 1001  # the worker waits for the main thread to drain the buffer
    assert ch.writable()
    ch.requests, ch.total_outbufs_len = [], 10  # done: the main thread sends the rest
    assert ch.writable()
    ch.requests, ch.close_when_flushed = ["running"], True
    assert ch.writable()


@pytest.mark.parametrize("watermark", [None, 256 * 1024])
def test_server_sends_a_large_response_whole_to_a_slow_reader(watermark):
    """6 MiB streamed by a running request to a client with a small receive buffer: the worker's own
    sends stall, the rest must still arrive (with a small high watermark the worker waits on the main
    thread to drain the buffer mid-request)."""
    chunks = [bytes([65 + k]) * (1 << 20) for k in range(6)]

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(sum(map(len, chunks))))])
        yield from chunks

    opts = {} if watermark is None else {"outbuf_high_watermark": watermark}
    server = app_mod.make_server(wsgi, port=0, threads=2, **opts)
    port = int(server.effective_port)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = bytearray()
        while True:
            data = sock.recv(64 * 1024)
            if not data:
                break
            got += data
            if len(got) < 1 << 20:
                time.sleep(0.001)  # slow at first: the socket fills while the request runs
        sock.close()
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b"".join(chunks)
    finally:  # stop the loop from inside it: close every connection, the loop ends when none is left
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        loop.join(10)
        server.task_dispatcher.shutdown()
    assert not loop.is_alive()
