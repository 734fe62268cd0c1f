"""The rating app in a real browser (issue 9, Tests): Debian's Chromium driven by Playwright (the recipe of
../shared/ASSETS.md, never `playwright install`) opens a rater's link, reads the instructions, selects
images with the mouse AND the keyboard (number keys, a letter key, arrows + Space), submits with Enter,
and the answers are found in SQLite and in the export; a page reload shows the rater their own answers.

Without Chromium or Playwright the test fails under CI (CI=true) and is skipped elsewhere."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pandas as pd
import pytest

from neuronaudit.crowd.store import export_ratings

from .crowd_app_helpers import AppServer, make_crowd

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def _need_browser():
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "the playwright package is not installed (pip install -r requirements.txt)"
    if why is None and not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        why = "Debian's chromium is not installed (apt-get install chromium; `make setup` does it as root)"
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs the real-browser test: {why}")
        pytest.skip(why)


def _stored(crowd, rater, task) -> dict[int, int]:
    with sqlite3.connect(crowd / "app.sqlite") as c:
        return dict(c.execute("SELECT position, rating FROM answers WHERE rater=? AND task=?", (rater, task)).fetchall())


def test_a_rater_selects_with_mouse_and_keyboard_submits_and_the_answers_are_stored(tmp_path):
    _need_browser()
    from playwright.sync_api import sync_playwright

    make_crowd(tmp_path, n_tasks=3, n_images=30, gold_every=2)
    with AppServer(tmp_path, ("--rater", "alice", "--rater", "bob", "--raters-per-task", "2")) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
                                    args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.goto(server.links["alice"])
            assert "Which images show the concept?" in page.inner_text("h1")
            assert "0 of 3 tasks done" in page.inner_text("#progress")
            keys_table = page.inner_text("#keys")
            assert "image 10" in keys_table and "Space" in keys_table and "Enter" in keys_table
            assert page.locator(".grid.example img").count() == 4
            page.click("#start")
            page.wait_for_url("**/task/t000001")
            assert page.inner_text("#progress") == "task 1 of 3"
            assert page.inner_text("#question") == "Select all the images that contain: dog"
            assert page.locator("#grid .cell img").count() == 15
            # every image loads (natural width > 0: served as a PNG under the CSP)
            page.wait_for_function("Array.from(document.querySelectorAll('#grid img')).every(i => i.complete && i.naturalWidth > 0)")
            # mouse: click images 2 and 4, and 6 twice (selected, then unselected)
            for pos in (2, 4, 6, 6):
                page.click(f"label.cell[data-position='{pos}']")
            # keyboard: 7, 4 again (unselect), 0 (= image 10), w (= image 12; the frame is now there)
            for key in ("7", "4", "0", "w"):
                page.keyboard.press(key)
            # arrows + Space: from image 12 (focused by "w") right twice -> image 14, Space selects it
            page.keyboard.press("ArrowRight")
            page.keyboard.press("ArrowRight")
            page.keyboard.press("Space")
            selected = sorted(int(x) for x in page.eval_on_selector_all(
                "#grid input:checked", "els => els.map(e => e.value)"))
            assert selected == [2, 7, 10, 12, 14]
            assert page.locator("#grid .cell.selected").count() == 5  # the frames show what is selected
            page.screenshot(path=str(tmp_path / "task.png"))
            page.keyboard.press("Enter")  # submit
            page.wait_for_url("**/task/t000002")
            assert page.inner_text("#progress") == "task 2 of 3"
            want = {p: int(p in selected) for p in range(1, 16)}
            assert _stored(tmp_path, "alice", "t000001") == want
            # back to the first task: the rater's own answers are shown, and a change is an update
            page.goto(server.links["alice"] + "task/t000001")
            again = sorted(int(x) for x in page.eval_on_selector_all("#grid input:checked", "els => els.map(e => e.value)"))
            assert again == selected
            page.keyboard.press("2")  # unselect image 2
            page.click("#submit")
            page.wait_for_url("**/task/t000002")
            want[2] = 0
            assert _stored(tmp_path, "alice", "t000001") == want
            # the export has exactly these 15 answers for alice's first task
            path, _ = export_ratings(tmp_path)
            df = pd.read_parquet(path)
            mine = df[(df["rater"] == "alice") & (df["task"] == "t000001")]
            assert len(mine) == 15 and (mine["source"] == "app").all() and (mine["concept"] == "dog").all()
            with sqlite3.connect(tmp_path / "app.sqlite") as c:
                ids = dict(c.execute("SELECT position, image_id FROM items WHERE task='t000001'").fetchall())
            assert dict(zip(mine["image_id"], mine["rating"], strict=True)) == {ids[p]: v for p, v in want.items()}
            # bob has not answered: his page shows nothing selected
            page.goto(server.links["bob"] + "task/t000001")
            assert page.locator("#grid input:checked").count() == 0
            assert not errors, errors
        finally:
            browser.close()
