"""End to end on imperfect data (issue 7): config/tiny.yaml on a folder of real Fashion-MNIST PNGs
with one corrupt file among them, and a concept model whose output for one concept is all NaN (as an
open-vocabulary model gives for a text it cannot encode). The run must finish, every table must
still be full, and both problems must be reported: the corrupt image by name in the dataset report
and the logs, the NaN concept in the sidecars of the stages that left it out."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from neuronaudit.io import read_matrix, write_matrix

from .conftest import FMNIST, copy_workflow, snakemake_cmd

pytestmark = pytest.mark.slow

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
NAN_CONCEPT = "Sneaker"


def _fashion_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), np.uint8, offset=8)[:n]
    return images, labels


@pytest.fixture(scope="module")
def imperfect_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("imperfect"))
    images_dir = work / "images"
    images_dir.mkdir()
    images, labels = _fashion_mnist(720)
    rows = []
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        name = f"img_{i:04d}.png"
        Image.fromarray(img).save(images_dir / name)
        rows.append((name, CLASSES[lab].replace("/", "-")))
    good = (images_dir / "img_0000.png").read_bytes()
    (images_dir / "broken.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    rows.append(("broken.png", "Bag"))
    pd.DataFrame(rows, columns=["filename", "label"]).to_csv(work / "labels.csv", index=False)
    override = {
        "dataset": {"adapter": "image_folder", "root": str(images_dir), "labels_csv": str(work / "labels.csv")},
        "images": {"max_failed_fraction": 0.01},
    }
    (work / "imperfect.yaml").write_text(yaml.safe_dump(override))
    cfg = ["--configfile", "config/tiny.yaml", "imperfect.yaml"]
    presence = "results/tiny/presence/probe/labels.parquet"
    _run(work, presence, *cfg)
    # the concept model's output for one concept becomes all NaN; everything after it reruns
    m = read_matrix(work / presence)
    probs = m["probability"].copy()
    probs[:, m.columns.index(NAN_CONCEPT.replace("/", "-"))] = np.nan
    write_matrix(work / presence, m.image_ids, {**m.values, "probability": probs}, columns=m.columns, meta=m.meta)
    proc = _run(work, *cfg)
    return work, proc


def _run(work, *args):
    proc = snakemake_cmd(work, "--cores", "2", *args)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_corrupt_image_is_named_and_left_out(imperfect_run):
    work, _ = imperfect_run
    res = work / "results" / "tiny"
    report = json.loads((res / "dataset_report.json").read_text())
    assert report["n_failed"] == 1
    assert report["failed"][0]["image_id"] == "broken.png"
    manifest = pd.read_parquet(res / "manifest.parquet")
    assert len(manifest) in (699, 700) and "broken.png" not in set(manifest["image_id"])  # splits drawn first
    log = (work / "logs" / "tiny" / "build_dataset.log").read_text()
    assert "broken.png" in log


def test_all_nan_concept_is_left_out_and_counted_not_the_images(imperfect_run):
    work, _ = imperfect_run
    res = work / "results" / "tiny"
    # Setting 1 with the probe guide: the NaN concept is excluded with a reason, the study is not empty
    sidecars = list((res / "setting1").rglob("*.excluded.parquet"))
    excluded = pd.concat([pd.read_parquet(p) for p in sidecars], ignore_index=True)
    hits = excluded[(excluded["item"] == "concept") & (excluded["name"] == NAN_CONCEPT)]
    assert len(hits) > 0 and hits["reason"].str.contains("NaN", case=False).all()
    rce = pd.read_parquet(res / "setting1" / "rce.parquet")
    assert len(rce) > 0 and rce["rce"].notna().any()
    # LE(probe) ran on every probing image: the explanation's metadata counts the NaN concept only
    scores = pd.read_parquet(res / "scores" / "lite0" / "head" / "le_probe.parquet")
    assert scores["rho"].notna().mean() > 0.5


def test_tables_are_full(imperfect_run):
    work, _ = imperfect_run
    res = work / "results" / "tiny" / "tables"
    t1 = pd.read_csv(res / "table1_automated.csv")
    assert {"le_l1_label", "invert_l1", "top_class"} <= set(t1["method"])
    assert (t1.loc[t1["n_neurons"] > 0, "n_common"] > 0).all()
    s1 = pd.read_csv(res / "setting1_rce.csv")
    assert len(s1) > 0
