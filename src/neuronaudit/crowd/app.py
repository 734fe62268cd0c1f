"""The local rating app behind ``neuronaudit serve CROWD`` (issue 9, item 4).

A Flask app served by waitress (a production WSGI server with a thread pool), on the store of
:mod:`neuronaudit.crowd.store`. Pages (``<token>`` is a rater's random token, ``<owner>`` the owner's):

| method, path | what |
|---|---|
| GET ``/r/<token>/`` | instructions with examples, keyboard shortcuts, the rater's tasks and progress |
| GET ``/r/<token>/next`` | redirect to the rater's first task not yet submitted (or the "all done" page) |
| GET ``/r/<token>/task/<task>`` | the task: "Select all the images that contain: <concept>", up to 15 images |
| POST ``/r/<token>/task/<task>`` | submit (form: ``csrf``, ``n``, ``sel`` = selected positions); 303 to the next task, or JSON ``{"saved": n, ...}`` with ``Accept: application/json`` |
| GET ``/r/<token>/task/<task>/img/<position>`` | the image at a position of an assigned task |
| GET ``/owner/<owner>/`` | progress per rater, gold agreement, agreement with the others, Fleiss' kappa so far |
| GET ``/owner/<owner>/app_ratings.parquet`` | the export (ratings schema of :mod:`neuronaudit.crowd.ratings`) |

Security model (docs/crowd_app.md): a wrong or missing token is refused with 403; a task not assigned
to the rater (or not existing) is 404 and nothing else of it is revealed; every POST carries the
session's CSRF token (a random value in a signed, HttpOnly, SameSite=Lax cookie, also in the form)
and is refused with 403 without it; positions are validated (whole numbers 1..n, no repeats); images are
served only by (assigned task, position), from ``CROWD/images/{image_id}.png`` with the resolved path
checked to lie inside ``CROWD/images`` (no file name ever comes from the request); gold answers and
``is_gold`` are never rendered into a rater's page; pages are sent with ``no-store``, a strict
Content-Security-Policy, ``no-referrer`` (the token is in the URL) and ``X-Frame-Options: DENY``.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.parquet as pq
from flask import Flask, abort, jsonify, redirect, render_template, request, send_file, session, url_for
from waitress import create_server
from waitress.channel import HTTPChannel
from werkzeug.exceptions import HTTPException

from neuronaudit.crowd.store import EXPORT_NAME, AppSetupError, AppStore

__all__ = ["create_app", "make_server", "serve", "KEYS"]

log = logging.getLogger(__name__)

#: keyboard shortcut of each image position (1-based): 1-9, 0, then q w e r t
KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "q", "w", "e", "r", "t")
#: defaults of ``crowd.app.threads`` / ``--threads`` and ``crowd.app.durability`` / ``--durability``
#: (the config schema's defaults; a test checks that they agree). 4 threads: on 2 cores, with writes
#: serialised, more threads add only GIL contention (benchmarks/bench_app.py, docs/crowd_app.md)
THREADS = 4
DURABILITY_DEFAULT = "process"


def create_app(crowd: str | os.PathLike, store: AppStore | None = None) -> Flask:
    """The WSGI app of one crowd folder whose store was set up (:meth:`AppStore.setup`)."""
    store = store or AppStore(crowd)
    here = Path(__file__).resolve().parent
    app = Flask(__name__, template_folder=str(here / "templates"), static_folder=str(here / "static"),
                static_url_path="/static")
    app.url_map.merge_slashes = False  # "//x" is a 404, not a redirect
    meta = store.meta()
    app.config.update(
        SECRET_KEY=meta["secret_key"], SESSION_COOKIE_NAME="neuronaudit_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", MAX_CONTENT_LENGTH=64 * 1024, SEND_FILE_MAX_AGE_DEFAULT=3600,
        TEMPLATES_AUTO_RELOAD=False,
    )
    # Everything below is fixed once the store is set up: kept in memory, so a request reads SQLite
    # only for the rater's own answers and progress.
    tokens = store.tokens()
    owner_token = meta["owner_token"]
    tasks = store.load_tasks().tasks
    assigned = store.assignments()
    assigned_set = {(r, t) for r, ts in assigned.items() for t in ts}
    index_of = {r: {t: k for k, t in enumerate(ts)} for r, ts in assigned.items()}
    images = (store.crowd / "images").resolve()
    app.extensions["neuronaudit_store"] = store

    def rater_of(token: str) -> str:
        rater = tokens.get(token)
        if rater is None:
            abort(403, "This link is not valid: check that you copied the whole link you were sent.")
        return rater

    def task_of(rater: str, task: str):
        if (rater, task) not in assigned_set:
            abort(404, "There is no such task among yours.")
        return tasks[task]

    def csrf_token() -> str:
        tok = session.get("csrf")
        if not tok:
            tok = session["csrf"] = secrets.token_urlsafe(24)
        return tok

    def check_csrf() -> None:
        sent = request.form.get("csrf", "")
        have = session.get("csrf", "")
        if not sent or not have or not hmac.compare_digest(sent.encode(), have.encode()):
            abort(403, "The form's security token is missing or out of date: reload the page and submit again.")

    def next_task(rater: str, after: str | None = None) -> str | None:
        done = store.submitted_tasks(rater)
        order = assigned[rater]
        start = index_of[rater][after] + 1 if after is not None else 0
        for t in order[start:] + order[:start]:
            if t not in done:
                return t
        return None

    @app.after_request
    def headers(resp):
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
        if not request.path.startswith("/static/") and "/img/" not in request.path:
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if request.accept_mimetypes.best == "application/json":
            return jsonify(error=e.name, status=e.code, detail=e.description), e.code
        return render_template("error.html", code=e.code, name=e.name, detail=e.description), e.code

    @app.get("/")
    def root():
        return render_template("error.html", code=200, name="neuronaudit rating app",
                               detail="Open the personal link you were sent to start rating.")

    @app.get("/r/<token>/")
    def instructions(token: str):
        rater = rater_of(token)
        done = store.submitted_tasks(rater)
        mine = [{"task": t, "number": k + 1, "done": t in done, "concept": tasks[t].concept}
                for k, t in enumerate(assigned[rater])]
        return render_template("instructions.html", token=token, tasks=mine, n_done=len(done & set(assigned[rater])),
                               n_tasks=len(mine), keys=KEYS)

    @app.get("/r/<token>/next")
    def go_next(token: str):
        rater = rater_of(token)
        t = next_task(rater)
        if t is None:
            return redirect(url_for("finished", token=token), code=303)
        return redirect(url_for("task_page", token=token, task=t), code=303)

    @app.get("/r/<token>/done")
    def finished(token: str):
        rater = rater_of(token)
        n = len(assigned[rater])
        return render_template("done.html", token=token, n_done=len(store.submitted_tasks(rater)), n_tasks=n,
                               remaining=next_task(rater))

    @app.get("/r/<token>/task/<task>")
    def task_page(token: str, task: str):
        rater = rater_of(token)
        t = task_of(rater, task)
        answers = store.answers_of(rater, task)
        done = store.submitted_tasks(rater)
        k = index_of[rater][task]
        order = assigned[rater]
        cells = [{"position": p, "key": KEYS[p - 1], "selected": answers.get(p) == 1,
                  "src": url_for("image", token=token, task=task, position=p)} for p in range(1, t.n_images + 1)]
        return render_template(
            "task.html", token=token, task=task, concept=t.concept, cells=cells, number=k + 1,
            n_tasks=len(order), n_done=len(done), submitted=task in done, csrf=csrf_token(), n=t.n_images,
            prev=order[k - 1] if k > 0 else None, next=order[k + 1] if k + 1 < len(order) else None)

    @app.post("/r/<token>/task/<task>")
    def submit(token: str, task: str):
        rater = rater_of(token)
        t = task_of(rater, task)
        check_csrf()
        allowed = {"csrf", "n", "sel"}
        extra = sorted(set(request.form) - allowed)
        if extra:
            abort(400, f"Unexpected form field(s) {extra}.")
        if request.form.get("n") != str(t.n_images):
            abort(400, f"The form showed {request.form.get('n')!r} images but this task has {t.n_images}: "
                       "reload the page and submit again.")
        raw = request.form.getlist("sel")
        selected: set[int] = set()
        for v in raw:
            if not (v.isascii() and v.isdigit() and len(v) <= 2 and 1 <= int(v) <= t.n_images):
                abort(400, f"Image position {v[:20]!r} is not one of 1..{t.n_images}.")
            if int(v) in selected:
                abort(400, f"Image position {v} is selected twice.")
            selected.add(int(v))
        at = store.submit(rater, task, t.n_images, selected)
        log.debug("rater %s submitted task %s (%d of %d selected)", rater, task, len(selected), t.n_images)
        nxt = next_task(rater, after=task)
        target = (url_for("task_page", token=token, task=nxt) if nxt is not None
                  else url_for("finished", token=token))
        if request.accept_mimetypes.best == "application/json":
            return jsonify(saved=t.n_images, selected=sorted(selected), task=task, submitted_at=at, next=target)
        return redirect(target, code=303)

    @app.get("/r/<token>/task/<task>/img/<int:position>")
    def image(token: str, task: str, position: int):
        rater = rater_of(token)
        t = task_of(rater, task)
        if not 1 <= position <= t.n_images:
            abort(404, "There is no image at that position.")
        path = (images / f"{t.image_ids[position - 1]}.png").resolve()
        if not path.is_relative_to(images) or not path.is_file():
            abort(404, "The image file is missing.")
        resp = send_file(path, mimetype="image/png", max_age=3600, conditional=True, etag=True)
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    def owner_check(owner: str) -> None:
        if not hmac.compare_digest(owner.encode(), owner_token.encode()):
            abort(403, "This owner link is not valid.")

    @app.get("/owner/<owner>/")
    def owner_page(owner: str):
        owner_check(owner)
        s = store.summary()
        return render_template("owner.html", s=s, owner=owner, crowd=str(store.crowd))

    @app.get("/owner/<owner>/app_ratings.parquet")
    def owner_export(owner: str):
        owner_check(owner)
        df = store.ratings_frame()
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
        buf.seek(0)
        return send_file(buf, mimetype="application/vnd.apache.parquet", as_attachment=True,
                         download_name=EXPORT_NAME)

    return app


def links(store: AppStore, base: str) -> tuple[dict[str, str], str]:
    """({rater: link}, owner link) for a server at ``base`` (``http://host:port``)."""
    raters = {r: f"{base}/r/{t}/" for t, r in store.tokens().items()}
    return raters, f"{base}/owner/{store.meta()['owner_token']}/"


class _Channel(HTTPChannel):
    """waitress's connection, minus a busy loop of its main thread.

    waitress asks ``select()`` to watch a connection for writing whenever its output buffer holds
    bytes, even while a worker thread is running that connection's request and holds the buffer's
    lock (between appending a chunk and sending it). The socket is writable, so ``select()`` returns
    at once, the main thread fails to take the lock and polls again: measured, 300,000 polls for about
    1,000 requests, the main thread using two thirds of the server's CPU, and since it holds the GIL in
    between it starves the very worker it waits for (closed-loop p95 150-670 ms in one run of three, 20 ms in
    the others). Here a connection whose request is still running is not watched for writing: the
    worker sends its own output as it writes it (waitress tries to on every write) and the main
    thread sends what is left once the request is done (``service`` wakes it then), or as soon as the
    worker waits for the buffer to drain (above ``outbuf_high_watermark``)."""

    def writable(self):
        if (self.requests and not (self.will_close or self.close_when_flushed)
                and self.total_outbufs_len <= self.adj.outbuf_high_watermark):
            return False
        return super().writable()


def make_server(app, host: str = "127.0.0.1", port: int = 8765, threads: int = THREADS, **options):
    """A waitress server of a WSGI app (not yet running); ``.effective_port`` is the bound port
    (``port=0``: a free one); ``options``: more of waitress's settings."""
    options = {"ident": "neuronaudit", "connection_limit": 200, "channel_timeout": 60,
               "clear_untrusted_proxy_headers": True, **options}
    server = create_server(app, host=host, port=port, threads=threads, **options)
    server.channel_class = _Channel  # this server's connections only; waitress itself is untouched
    return server


def serve(crowd: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765,
          raters: int | list[str] | None = None, raters_per_task: int | None = None, threads: int = THREADS,
          durability: str = DURABILITY_DEFAULT, out: TextIO | None = None, run: bool = True) -> int:
    """Set up (or reopen) the store, print the links (to ``out``, default stdout) and serve until
    interrupted; ``run=False``: set up and print only (nothing is bound). ``durability``: "process"
    (an acknowledged answer survives kill -9 of the server) or "power" (also an OS crash or power loss);
    docs/crowd_app.md, "Durability"."""
    out = out if out is not None else sys.stdout
    if threads < 1:
        raise AppSetupError(f"--threads {threads}: need at least one worker thread")
    store = AppStore.setup(crowd, raters=raters, raters_per_task=raters_per_task, durability=durability)
    if run:
        store.start_checkpointer()
    server = make_server(create_app(crowd, store), host=host, port=port, threads=threads) if run else None
    shown = host if ":" not in host else f"[{host}]"
    base = f"http://{shown}:{server.effective_port if server else port}"
    rater_links, owner_link = links(store, base)
    meta = store.meta()
    print(f"neuronaudit rating app: {store.crowd} ({len(store.load_tasks().tasks)} tasks, "
          f"{meta['raters_per_task']} raters per task), store {store.path} (durability {durability})", file=out)
    for r, link in rater_links.items():
        print(f"rater {r}: {link}", file=out)
    print(f"owner: {owner_link}", file=out)
    print(f"export: {owner_link}{EXPORT_NAME}  (or: neuronaudit export-ratings {crowd})", file=out)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}, not only this machine; anyone who can reach it and has a link "
              "can rate. Use it behind HTTPS on an untrusted network.", file=out)
    out.flush()
    if server is None:
        return 0
    print(f"serving on {base} (Ctrl-C to stop)", file=out, flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        store.stop_checkpointer()
    return 0
