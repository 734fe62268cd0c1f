"""The MTurk export (neuronaudit.crowd.export): template variables = batch columns, images, cost."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neuronaudit.crowd.design import make_tasks
from neuronaudit.crowd.export import batch_input, cost_estimate, image_cell, run_export, task_html
from neuronaudit.crowd.mturk import image_id_from_cell


def _study(tmp_path, n_images=40, per_concept=(17, 5)):
    rng = np.random.default_rng(0)
    ids = [f"img-{i:03d}" for i in range(n_images)]
    srcs = []
    for i in ids:
        p = tmp_path / "src" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(p)
        srcs.append(str(p))
    manifest = pd.DataFrame({"image_id": ids, "source": srcs, "split": "test", "label": "x"})
    manifest.to_parquet(tmp_path / "manifest.parquet")
    items = pd.concat([pd.DataFrame({"image_id": ids[:per_concept[0]], "concept": "dog"}),
                       pd.DataFrame({"image_id": ids[-per_concept[1]:], "concept": "cat"})], ignore_index=True)
    tasks = make_tasks(items, 15, 0, seed=0)
    tasks.to_parquet(tmp_path / "tasks.parquet")
    design = pd.DataFrame({"explanation_id": ["m/l/0/a"] * per_concept[0] + ["m/l/1/b"] * per_concept[1],
                           "image_id": items["image_id"]})
    design.to_parquet(tmp_path / "design.parquet")
    expl = pd.DataFrame({"explanation_id": ["m/l/0/a", "m/l/1/b"], "concepts": [json.dumps(["dog"]), json.dumps(["cat"])]})
    expl.to_parquet(tmp_path / "explanations.parquet")
    return tasks


def test_batch_columns_are_the_template_variables_and_images_are_written(tmp_path):
    tasks = _study(tmp_path)
    outs = {"batch": tmp_path / "out" / "batch_input.csv", "html": tmp_path / "out" / "task.html",
            "images": tmp_path / "out" / "images", "cost": tmp_path / "out" / "cost.json"}
    settings = {"images_per_task": 15, "gold_per_task": 0, "raters_per_input": 3, "image_size": 100,
                "mturk": {"reward_per_task": 0.05, "fee_per_task": 0.01, "image_base_url": "https://b.example/c/"}}
    cost = run_export(tasks_path=tmp_path / "tasks.parquet", design_path=tmp_path / "design.parquet",
                      explanations_path=tmp_path / "explanations.parquet", manifest_path=tmp_path / "manifest.parquet",
                      settings=settings, outs=outs)
    html = outs["html"].read_text()
    variables = list(dict.fromkeys(re.findall(r"\$\{([^}]*)\}", html)))
    batch = pd.read_csv(outs["batch"], dtype=str, keep_default_na=False)
    assert list(batch.columns) == variables == ["task_id", "concept", *(f"image_{k}" for k in range(1, 16))]
    assert "<crowd-form" in html and "Select all the images that contain: " in html
    for k in range(1, 16):
        assert f'<crowd-checkbox name="img_{k}">' in html
    # one row per task; blank slots blank; the cells map back to the image ids
    assert list(batch["task_id"]) == sorted(tasks["task"].unique())
    for row in batch.itertuples(index=False):
        t = tasks[tasks["task"] == row.task_id].sort_values("position")
        cells = [getattr(row, f"image_{k}") for k in range(1, 16)]
        assert [image_id_from_cell(c) for c in cells if c] == list(t["image_id"])
        assert all(c == "" for c in cells[len(t):])
        assert all(c.startswith("https://b.example/c/") and c.endswith(".png") for c in cells if c)
        assert row.concept == t["concept"].iloc[0]
    # images: every task image, upscaled to at least image_size
    written = sorted(p.stem for p in outs["images"].glob("*.png"))
    assert written == sorted(tasks["image_id"].unique())
    with Image.open(outs["images"] / f"{written[0]}.png") as im:
        assert min(im.size) >= 100
    assert json.loads(outs["cost"].read_text())["total"] == cost["total"]
    # 17 dog images -> 2 tasks, 5 cat images -> 1 task: 3 tasks x 3 raters x $0.06
    assert cost["n_tasks"] == 3 and cost["total"] == pytest.approx(0.54)


def test_default_image_cells_are_relative_paths_that_import_maps_back():
    assert image_cell("fmnist-test-00001") == "images/fmnist-test-00001.png"
    assert image_id_from_cell(image_cell("fmnist-test-00001")) == "fmnist-test-00001"
    assert image_id_from_cell(image_cell("a b", "https://x/y/")) == "a b"


def test_html_has_no_variables_beyond_its_slots():
    for n in (1, 7, 15):
        assert re.findall(r"\$\{([^}]*)\}", task_html(n)).count("concept") >= 1
        assert set(re.findall(r"\$\{([^}]*)\}", task_html(n))) == {"task_id", "concept",
                                                                   *(f"image_{k}" for k in range(1, n + 1))}


def test_batch_input_refuses_tasks_larger_than_the_template():
    tasks = make_tasks(pd.DataFrame({"image_id": [f"i{k}" for k in range(10)], "concept": "a"}), 10, 0, seed=0)
    with pytest.raises(ValueError, match="slots"):
        batch_input(tasks, 5)


@pytest.mark.parametrize("gold, expected_tasks", [(0, 12), (1, 13)])
def test_cost_of_one_explanation_matches_the_paper_design(gold, expected_tasks):
    """SPEC sec. 5: 3 raters x 180 inputs at $0.05 + $0.01 per 15-image task is about $2.2."""
    ids = [f"i{k}" for k in range(180)]
    tasks = make_tasks(pd.DataFrame({"image_id": ids, "concept": "a"}), 15, gold, seed=0,
                       gold={"a": [("g0", 1), ("g1", 0)]})
    design = pd.DataFrame({"explanation_id": "e", "image_id": ids})
    expl = pd.DataFrame({"explanation_id": ["e"], "concepts": [json.dumps(["a"])]})
    c = cost_estimate(tasks, design, expl, raters_per_input=3, reward_per_task=0.05, fee_per_task=0.01,
                      images_per_task=15, gold_per_task=gold)
    assert c["n_tasks"] == expected_tasks
    assert c["total"] == pytest.approx(expected_tasks * 3 * 0.06)
    assert c["per_explanation"][0]["cost_alone"] == pytest.approx(expected_tasks * 3 * 0.06)
    assert c["per_explanation"][0]["cost_share"] == pytest.approx(c["total"])
    assert 2.1 <= c["total"] <= 2.4
    assert c["n_ratings"] == len(tasks) * 3
