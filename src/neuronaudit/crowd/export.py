"""Export the crowd tasks for Amazon Mechanical Turk (issue 9, item 2). Rule ``crowd_export``; docs/crowd.md.

* **Task HTML** (:func:`task_html`) for MTurk's template editor ("Create" -> "New project" -> "Custom"
  -> paste into "Design layout"): crowd-html-elements' ``<crowd-form>`` with one
  ``<crowd-checkbox name="img_<k>">`` per image slot under "Select all the images that contain:
  ${concept}". crowd-form submits the checkboxes as ``Answer.taskAnswers`` =
  ``[{"img_1": {"on": true}, "img_2": {"on": false}, ...}]``, the encoding
  :mod:`neuronaudit.crowd.mturk` reads back. Slots whose ``${image_<k>}`` is blank (the last task of a
  concept can have fewer images) are hidden by a small script. The page uses no other ``${...}``.
* **Batch input CSV** (:func:`batch_input`): one row per task; its columns are exactly the template's
  ``${...}`` variables: ``task_id``, ``concept``, ``image_1`` .. ``image_<images_per_task>`` (blank for
  missing slots). An image cell is ``image_base_url + "<image_id>.png"``; with the default
  ``image_base_url: ""`` it is the path ``images/<image_id>.png`` relative to the crowd folder (a
  path, so that the importer maps it back to the image id: ``crowd.mturk.image_id_from_cell``).
* **Images** (:func:`render_images`): ``CROWD/images/<image_id>.png`` for every image of the tasks,
  decoded from the manifest's sources (``data.images.open_image``: files, Fashion-MNIST idx, ...) and
  upscaled so that the shorter side is at least ``image_size`` pixels (never downscaled). Upload the
  folder (e.g. to a public S3 bucket) and set ``crowd.mturk.image_base_url`` to its URL + "/".
* **Cost** (:func:`cost_estimate`): tasks x raters_per_input assignments, each paid ``reward_per_task``
  plus ``fee_per_task`` (SPEC sec. 5: $0.05 + $0.01 per 15-image task; 3 raters x 180 inputs is about
  $2.2 per explanation). Per explanation, the cost it would have alone (its own distinct images in
  tasks of its own) and its share of the batch (items shared between explanations are paid once).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image
from tqdm import tqdm

from neuronaudit.data.images import open_image
from neuronaudit.io import atomic_path, write_csv, write_json

log = logging.getLogger(__name__)

__all__ = ["TEMPLATE_VARIABLE", "DEFAULT_IMAGE_DIR", "image_cell", "template_variables", "task_html",
           "batch_input", "render_images", "cost_estimate", "cost_line", "run_export"]

#: a ``${name}`` variable of an MTurk HTML template
TEMPLATE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: where the images are, relative to the crowd folder
DEFAULT_IMAGE_DIR = "images"


def image_cell(image_id: str, base_url: str = "") -> str:
    """The batch CSV cell of an image: base_url + "<image_id>.png", or "images/<image_id>.png" when base_url is ""."""
    return f"{base_url or DEFAULT_IMAGE_DIR + '/'}{image_id}.png"


def template_variables(html: str) -> list[str]:
    """The ``${...}`` variables of a template, in order of first appearance."""
    return list(dict.fromkeys(TEMPLATE_VARIABLE.findall(html)))


_HTML_HEAD = """<!-- neuronaudit crowd task: paste into MTurk's template editor (Custom project, "Design layout").
     Its variables are the columns of the batch input CSV: task_id, concept, image_1 .. image_N. -->
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<style>
  .na-grid { display: grid; grid-template-columns: repeat(5, 1fr); gap: 12px; max-width: 900px; }
  .na-cell { border: 2px solid #ddd; border-radius: 6px; padding: 6px; text-align: center; }
  .na-cell img { width: 100%; max-width: 160px; image-rendering: pixelated; cursor: pointer; }
  .na-concept { font-weight: bold; font-size: 1.3em; }
</style>
<crowd-form>
  <p class="na-task">Task ${task_id}</p>
  <p>Select all the images that contain: <span class="na-concept">${concept}</span></p>
  <p>Tick the box under every image in which you see <b>${concept}</b>; leave the others unticked.
     If no image contains it, submit without ticking any.</p>
  <div class="na-grid">
"""

_HTML_CELL = """    <div class="na-cell" data-src="${{image_{k}}}">
      <img src="${{image_{k}}}" alt="image {k}" onclick="this.parentNode.querySelector('crowd-checkbox').click()">
      <crowd-checkbox name="img_{k}">image {k}</crowd-checkbox>
    </div>
"""

_HTML_TAIL = """  </div>
  <short-summary><p>Select all the images that contain the concept.</p></short-summary>
</crowd-form>
<script>
  // hide the slots this task does not use (a blank image cell in the batch CSV)
  document.querySelectorAll(".na-cell").forEach(function (cell) {
    if (!cell.getAttribute("data-src").trim()) { cell.style.display = "none"; }
  });
</script>
"""


def task_html(n_slots: int = 15) -> str:
    """The task HTML with ``n_slots`` image slots (module docstring)."""
    if n_slots < 1:
        raise ValueError(f"a task needs at least one image slot, got {n_slots}")
    head = _HTML_HEAD.replace("image_N", f"image_{n_slots}")
    return head + "".join(_HTML_CELL.format(k=k) for k in range(1, n_slots + 1)) + _HTML_TAIL


def batch_input(tasks: pd.DataFrame, n_slots: int = 15, base_url: str = "") -> pd.DataFrame:
    """One row per task: task_id, concept, image_1..image_<n_slots> (blank for missing slots)."""
    cols = ["task_id", "concept", *(f"image_{k}" for k in range(1, n_slots + 1))]
    if not len(tasks):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    if int(tasks["position"].max()) > n_slots:
        raise ValueError(f"a task has {int(tasks['position'].max())} images but the template has {n_slots} slots; "
                         "raise crowd.images_per_task or rebuild the design")
    concepts = tasks.groupby("task", sort=True)["concept"].agg(["first", "nunique"])
    if (concepts["nunique"] > 1).any():
        bad = concepts.index[concepts["nunique"] > 1][0]
        raise ValueError(f"task {bad} shows more than one concept; a task asks about one concept")
    wide = tasks.pivot(index="task", columns="position", values="image_id").reindex(columns=range(1, n_slots + 1))
    out = pd.DataFrame({"task_id": wide.index.astype(str), "concept": concepts["first"].reindex(wide.index).to_numpy()})
    for k in range(1, n_slots + 1):
        v = wide[k].to_numpy(dtype=object)
        out[f"image_{k}"] = [image_cell(x, base_url) if isinstance(x, str) and x else "" for x in v]
    return out[cols].reset_index(drop=True)


def render_images(manifest: pd.DataFrame, image_ids: Sequence[str], out_dir, size: int = 112) -> int:
    """Write ``out_dir/<image_id>.png`` for every id (module docstring); returns the number written.

    The folder is built beside ``out_dir`` and renamed into place, so a crash leaves no half folder.
    An id not in the manifest is an error naming it."""
    out_dir = Path(out_dir)
    ids = list(dict.fromkeys(str(i) for i in image_ids))
    src = manifest.set_index("image_id")["source"]
    missing = [i for i in ids if i not in src.index]
    if missing:
        raise ValueError(f"{len(missing)} task image(s) are not in the manifest, e.g. {missing[:3]}; rebuild the design")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for iid in tqdm(ids, desc="crowd images", mininterval=5, disable=len(ids) < 200):
            img = open_image(src[iid])
            short = min(img.size)
            if short < size:
                f = size / short
                resample = Image.NEAREST if f == int(f) else Image.BICUBIC
                img = img.resize((round(img.size[0] * f), round(img.size[1] * f)), resample)
            img.save(tmp / f"{iid}.png", format="PNG")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return len(ids)


def _tasks_needed(n_images: int, per_task: int) -> int:
    return -(-int(n_images) // per_task) if n_images else 0


def cost_estimate(tasks: pd.DataFrame, design: pd.DataFrame, explanations: pd.DataFrame, *,
                  raters_per_input: int, reward_per_task: float, fee_per_task: float,
                  images_per_task: int = 15, gold_per_task: int = 0) -> dict[str, Any]:
    """The batch's cost in dollars and its split over explanations (module docstring)."""
    n_tasks = int(tasks["task"].nunique()) if len(tasks) else 0
    per_assignment = round(float(reward_per_task) + float(fee_per_task), 6)
    n_assignments = n_tasks * int(raters_per_input)
    total = n_assignments * per_assignment
    per_task = max(1, int(images_per_task) - int(gold_per_task))
    rated = tasks.loc[~tasks["is_gold"].astype(bool)] if len(tasks) else tasks
    per_concept_tasks = rated.groupby("concept")["task"].nunique() if len(rated) else pd.Series(dtype=float)
    per_concept_items = rated.groupby("concept")["image_id"].nunique() if len(rated) else pd.Series(dtype=float)
    rows = []
    for r in explanations.itertuples(index=False):
        concepts = json.loads(r.concepts)
        imgs = design.loc[design["explanation_id"] == r.explanation_id, "image_id"]
        n_distinct = int(imgs.nunique())
        alone = sum(_tasks_needed(n_distinct, per_task) for _ in concepts)
        # share of the batch: per concept, the concept's tasks in proportion to the explanation's images
        share = 0.0
        for c in concepts:
            if c in per_concept_items.index and per_concept_items[c]:
                share += per_concept_tasks[c] * n_distinct / per_concept_items[c]
        rows.append({"explanation_id": r.explanation_id, "n_draws": int(len(imgs)), "n_distinct_images": n_distinct,
                     "n_concepts": len(concepts), "tasks_alone": alone,
                     "cost_alone": round(alone * raters_per_input * per_assignment, 4),
                     "cost_share": round(share * raters_per_input * per_assignment, 4)})
    per_expl = pd.DataFrame(rows)
    n_expl = len(per_expl)
    return {
        "n_tasks": n_tasks, "raters_per_input": int(raters_per_input), "n_assignments": n_assignments,
        "reward_per_task": float(reward_per_task), "fee_per_task": float(fee_per_task),
        "cost_per_assignment": per_assignment, "total": round(total, 2),
        "n_explanations": n_expl,
        "mean_per_explanation": round(total / n_expl, 4) if n_expl else None,
        "mean_alone_per_explanation": round(float(per_expl["cost_alone"].mean()), 4) if n_expl else None,
        "n_images": int(tasks["image_id"].nunique()) if len(tasks) else 0,
        "n_ratings": int(len(tasks)) * int(raters_per_input),
        "per_explanation": rows,
    }


def cost_line(cost: Mapping[str, Any]) -> str:
    mean = cost["mean_per_explanation"]
    return (f"MTurk cost: {cost['n_tasks']} tasks x {cost['raters_per_input']} raters x "
            f"${cost['cost_per_assignment']:.2f} (reward ${cost['reward_per_task']:.2f} + fee "
            f"${cost['fee_per_task']:.2f}) = ${cost['total']:.2f}; {cost['n_explanations']} explanations, "
            + (f"${mean:.2f} each on average (${cost['mean_alone_per_explanation']:.2f} each if rated alone)"
               if mean is not None else "none"))


def run_export(*, tasks_path, design_path, explanations_path, manifest_path, settings: Mapping[str, Any],
               outs: Mapping[str, Any]) -> dict[str, Any]:
    """The ``crowd_export`` rule: batch CSV, task HTML, images folder and cost.json (outs keys: batch,
    html, images, cost)."""
    tasks = pd.read_parquet(tasks_path)
    design = pd.read_parquet(design_path)
    explanations = pd.read_parquet(explanations_path)
    mturk = dict(settings.get("mturk", {}))
    n_slots = int(settings.get("images_per_task", 15))
    html = task_html(n_slots)
    batch = batch_input(tasks, n_slots, mturk.get("image_base_url", ""))
    if template_variables(html) != list(batch.columns):
        raise AssertionError("the batch CSV's columns differ from the template's variables")
    write_csv(batch, outs["batch"])
    with atomic_path(outs["html"]) as tmp:
        tmp.write_text(html)
    manifest = pd.read_parquet(manifest_path, columns=["image_id", "source"])
    n_img = render_images(manifest, tasks["image_id"].unique() if len(tasks) else [], outs["images"],
                          int(settings.get("image_size", 112)))
    cost = cost_estimate(tasks, design, explanations, raters_per_input=int(settings.get("raters_per_input", 3)),
                         reward_per_task=float(mturk.get("reward_per_task", 0.05)),
                         fee_per_task=float(mturk.get("fee_per_task", 0.01)),
                         images_per_task=n_slots, gold_per_task=int(settings.get("gold_per_task", 1)))
    write_json(cost, outs["cost"])
    log.info("exported %d tasks (%d image slots each) and %d images", len(batch), n_slots, n_img)
    log.info("%s", cost_line(cost))
    return cost

