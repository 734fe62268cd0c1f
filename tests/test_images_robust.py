"""Imperfect images and dataset configs (issue 7, items 3, 4 and 9), on real files written here.

* a truncated JPEG and a garbage file among foolbox's real ImageNet JPEGs are skipped and named by every
  stage that decodes images (dataset build with pixel attributes, image_features and the embeddings
  made from them, activation extraction, small-CNN training), under the one key
  ``images.max_failed_fraction`` (its old name ``activations.max_failed_fraction`` still works), and
  fail the stage, naming the files and the key, only beyond that fraction;
* 16-bit (and ``I`` / ``F`` / palette / LA / CMYK) images decode to the same 8-bit RGB as their 8-bit
  twins, so they are not all "bright";
* ``dataset.wordnet_superclasses: null`` (the schema default) is on for WordNet-id class folders, and
  other folder names get a warning;
* a results folder built from another dataset block is refused, by the library check and by
  ``snakemake -n --rerun-triggers mtime``.

Configs are filled by the schema (``snakemake.utils.validate``), as the pipeline fills them.
"""

import copy
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate

from neuronaudit.data.datasets import DatasetSpecMismatch, build_dataset, check_dataset_spec, dataset_spec
from neuronaudit.data.images import (
    ImageDecodeError,
    ImageSource,
    TooManyFailedImages,
    max_failed_fraction,
    open_image,
)
from neuronaudit.io import provenance, read_matrix, write_table

from .conftest import REPO

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())


def filled(dataset: dict, **sections) -> dict:
    """config/tiny.yaml with another dataset block and sections, defaults filled by the schema."""
    cfg = copy.deepcopy(TINY)
    cfg["dataset"] = dataset
    cfg.update(sections)
    validate(cfg, SCHEMA)
    return cfg


@pytest.fixture(scope="module")
def wnid_tree(tmp_path_factory, imagenet_jpegs):
    """ImageNet-validation layout: 8 real JPEGs in WordNet-id folders, plus a truncated JPEG and a
    garbage file (10 images, 2 broken)."""
    from neuronaudit.data.vocabularies import imagenet_wnids

    root = tmp_path_factory.mktemp("wnid_tree")
    wnids = imagenet_wnids()
    for f, cls in imagenet_jpegs[:8]:
        (root / wnids[cls]).mkdir(exist_ok=True)
        shutil.copy(f, root / wnids[cls] / f.name)
    first = root / wnids[imagenet_jpegs[0][1]]
    data = imagenet_jpegs[0][0].read_bytes()
    (first / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (first / "garbage.jpg").write_bytes(b"this is not an image\n" * 20)
    return root


BROKEN = {"truncated.jpg", "garbage.jpg"}


def _names(items) -> set[str]:
    return {os.path.basename(x) for x in items}


# -- decoding ---------------------------------------------------------------------------------------


def test_truncated_and_garbage_files_raise_naming_the_file(wnid_tree):
    for name in BROKEN:
        path = str(next(wnid_tree.rglob(name)))
        with pytest.raises(ImageDecodeError, match=name):
            open_image(path)
    # PIL's permissive mode is not switched on behind the user's back
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_sixteen_bit_and_other_modes_decode_like_their_8bit_twins(tmp_path, imagenet_jpegs):
    grey = np.asarray(Image.open(imagenet_jpegs[0][0]).convert("L").resize((64, 64)))
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    twin = np.asarray(open_image(str(tmp_path / "g8.png")))
    np.testing.assert_array_equal(np.asarray(open_image(str(tmp_path / "g16.png"))), twin)
    # 'I' (32-bit int holding 16-bit data), 'F' in [0, 1], LA and 1-bit images
    from neuronaudit.data.images import to_rgb

    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(grey.astype(np.int32) * 257))), twin)
    np.testing.assert_array_equal(np.asarray(to_rgb(Image.fromarray(grey.astype(np.float32) / 255))), twin)
    Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(np.asarray(open_image(str(tmp_path / "la.png"))), twin)
    # palette and CMYK images come out as RGB of the right size
    rgb = Image.open(imagenet_jpegs[1][0]).resize((64, 64))
    rgb.convert("P").save(tmp_path / "p.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("p.png", "cmyk.jpg"):
        img = open_image(str(tmp_path / name))
        assert img.mode == "RGB" and img.size == (64, 64)
        assert abs(np.asarray(img, np.float32).mean() - np.asarray(rgb, np.float32).mean()) < 8


def test_sixteen_bit_png_is_not_labelled_bright(tmp_path, imagenet_jpegs):
    grey = np.asarray(Image.open(imagenet_jpegs[2][0]).convert("L"))
    for name, arr in (("eight", grey), ("sixteen", grey.astype(np.uint16) * 257)):
        (tmp_path / name).mkdir()
        Image.fromarray(arr).save(tmp_path / name / "img.png")
    cfg = filled({"adapter": "image_folder", "root": str(tmp_path)})
    m, labels = build_dataset(cfg["dataset"], max_failed_fraction(cfg))
    att = labels[labels["kind"] == "attribute"].pivot_table(
        index="image_id", columns="concept", values="present", observed=True
    )
    att.index = [i.split("/")[0] for i in att.index]
    pd.testing.assert_series_equal(att.loc["eight"], att.loc["sixteen"], check_names=False)
    assert att.loc["sixteen", "bright"] == 0


# -- build_dataset: skipped, named, WordNet by default -----------------------------------------------


def test_build_dataset_skips_and_names_corrupt_files(wnid_tree, caplog):
    cfg = filled({"adapter": "image_folder", "root": str(wnid_tree)}, images={"max_failed_fraction": 0.25})
    assert cfg["dataset"]["wordnet_superclasses"] is None  # the schema's default
    with caplog.at_level(logging.WARNING):
        m, labels, report = build_dataset(cfg["dataset"], max_failed_fraction(cfg), with_report=True)
    assert len(m) == 8 and not (_names(m["source"]) & BROKEN)
    assert set(labels["image_id"]) == set(m["image_id"])
    assert report["n_images"] == 10 and report["n_failed"] == 2 and report["max_failed_fraction"] == 0.25
    assert _names(f["source"] for f in report["failed"]) == BROKEN
    assert all(os.path.basename(f["source"]) in f["error"] for f in report["failed"])
    assert all(name in caplog.text for name in BROKEN)
    # WordNet on by default for WordNet-id folders: readable class names and superclasses
    assert not m["label"].str.match(r"^n\d{8}$").any() and report["wordnet_superclasses"]
    kinds = labels.drop_duplicates("concept").set_index("concept")["kind"]
    assert (kinds == "superclass").sum() >= 1


def test_build_dataset_fails_past_the_fraction_naming_files_and_key(wnid_tree):
    cfg = filled({"adapter": "image_folder", "root": str(wnid_tree)})  # default 0.01: 2 of 10 is too many
    with pytest.raises(TooManyFailedImages) as err:
        build_dataset(cfg["dataset"], max_failed_fraction(cfg))
    msg = str(err.value)
    assert "images.max_failed_fraction=0.01" in msg and all(name in msg for name in BROKEN)


def test_non_wordnet_class_folders_warn(tmp_path, imagenet_jpegs, caplog):
    for f, cls in imagenet_jpegs[:4]:
        (tmp_path / f"class{cls}").mkdir(exist_ok=True)
        shutil.copy(f, tmp_path / f"class{cls}" / f.name)
    cfg = filled({"adapter": "image_folder", "root": str(tmp_path), "compute_attributes": False})
    with caplog.at_level(logging.WARNING):
        m, labels, report = build_dataset(cfg["dataset"], max_failed_fraction(cfg), with_report=True)
    assert "not WordNet ids" in caplog.text and "not WordNet ids" in report["notes"][0]
    assert set(labels["kind"]) == {"class"} and m["label"].str.startswith("class").all()
    # explicitly off: no warning
    caplog.clear()
    cfg["dataset"]["wordnet_superclasses"] = False
    build_dataset(cfg["dataset"])
    assert "WordNet" not in caplog.text


# -- image_features, embeddings, extraction, small CNN: the same key -------------------------------


@pytest.fixture(scope="module")
def unchecked_manifest(wnid_tree, tmp_path_factory):
    """A manifest that still holds the broken files (no pixel attributes, so the build decodes nothing)."""
    d = tmp_path_factory.mktemp("feat")
    cfg = filled({"adapter": "image_folder", "root": str(wnid_tree), "compute_attributes": False})
    m, _, report = build_dataset(cfg["dataset"], max_failed_fraction(cfg), with_report=True)
    assert len(m) == 10 and report["n_failed"] == 0 and "note" in report
    write_table(m, d / "manifest.parquet", provenance(dataset=dataset_spec(cfg["dataset"])))
    return d, m, cfg["dataset"]


@pytest.mark.parametrize("section", ["images", "activations"])  # the key and its old name
def test_image_features_and_embeddings_honour_the_shared_key(unchecked_manifest, section):
    from neuronaudit.concepts.backbones import shared_backbone
    from neuronaudit.concepts.stage import embed_from_features, image_features

    d, m, dataset = unchecked_manifest
    cfg = filled(dataset, **{section: {"max_failed_fraction": 0.25}})
    assert max_failed_fraction(cfg) == 0.25
    spec = {"backend": "conse", "variant": 0, "input_size": 64}
    backbone = shared_backbone(spec)
    feats, rep = d / f"{section}.parquet", d / f"{section}.report.json"
    image_features(
        backbone,
        str(d / "manifest.parquet"),
        str(feats),
        str(rep),
        batch_size=4,
        max_failed_fraction=max_failed_fraction(cfg),
        progress=False,
    )
    report = json.loads(rep.read_text())
    assert report["n_failed"] == 2 and _names(f["source"] for f in report["failed"]) == BROKEN
    written = read_matrix(feats)
    assert len(written.image_ids) == 8 and not (_names(written.image_ids) & BROKEN)
    # the embeddings made from the features leave the skipped images out (NaN rows) and say so
    emb_rep = d / f"{section}.emb.report.json"
    embed_from_features(
        spec,
        str(feats),
        str(d / "manifest.parquet"),
        str(d / f"{section}.emb.parquet"),
        report_out=str(emb_rep),
        max_failed_fraction=max_failed_fraction(cfg),
    )
    emb = read_matrix(d / f"{section}.emb.parquet")["embedding"]
    broken_rows = m["source"].map(os.path.basename).isin(BROKEN).to_numpy()
    assert np.isnan(emb[broken_rows]).all() and np.isfinite(emb[~broken_rows]).all()
    assert _names(f["source"] for f in json.loads(emb_rep.read_text())["failed"]) == BROKEN


def test_image_features_fail_past_the_fraction(unchecked_manifest, tmp_path):
    from neuronaudit.concepts.backbones import shared_backbone
    from neuronaudit.concepts.stage import image_features

    d, _, dataset = unchecked_manifest
    cfg = filled(dataset)
    with pytest.raises(TooManyFailedImages) as err:
        image_features(
            shared_backbone({"backend": "probe", "variant": 0, "input_size": 64}),
            str(d / "manifest.parquet"),
            str(tmp_path / "f.parquet"),
            batch_size=4,
            max_failed_fraction=max_failed_fraction(cfg),
            progress=False,
        )
    assert "images.max_failed_fraction" in str(err.value) and all(n in str(err.value) for n in BROKEN)
    assert not (tmp_path / "f.parquet").exists()


def test_extraction_report_names_the_files(unchecked_manifest, tmp_path):
    import torch

    from neuronaudit.activations.extract import extract_activations
    from neuronaudit.activations.models import LoadedModel, image_transform

    d, _, dataset = unchecked_manifest
    cfg = filled(dataset, images={"max_failed_fraction": 0.2})
    torch.manual_seed(0)
    model = LoadedModel(
        torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval(),
        image_transform(16, (0.5,) * 3, (0.5,) * 3),
        16,
        {},
    )
    rep = extract_activations(
        ImageSource.from_manifest(d / "manifest.parquet"),
        model,
        {"conv": "0"},
        {"conv": tmp_path / "c.parquet"},
        batch_size=3,
        max_failed_fraction=max_failed_fraction(cfg),
        progress=False,
    )
    rep.write(tmp_path / "extraction_report.json")
    report = json.loads((tmp_path / "extraction_report.json").read_text())
    assert report["n_written"] == 8 and _names(f["source"] for f in report["failed"]) == BROKEN
    assert report["max_failed_fraction"] == 0.2


def test_small_cnn_training_skips_and_names(unchecked_manifest):
    from neuronaudit.activations.train import fit_on_manifest

    _, m, dataset = unchecked_manifest
    cfg = filled(dataset, images={"max_failed_fraction": 0.25})
    train = m.assign(split="train")
    _, metrics = fit_on_manifest(train, epochs=1, batch_size=4, max_failed_fraction=max_failed_fraction(cfg))
    assert _names(f["source"] for f in metrics["skipped"]["failed"]) == BROKEN
    with pytest.raises(TooManyFailedImages, match="images.max_failed_fraction"):
        fit_on_manifest(train, epochs=1, max_failed_fraction=0.01)


# -- item 9: a results folder built from another dataset block --------------------------------------


def test_dataset_spec_mismatch_is_refused(tmp_path):
    cfg = filled(TINY["dataset"])
    m = pd.DataFrame({"image_id": ["a"], "source": ["x"], "label": ["c"], "split": ["val"]})
    study = tmp_path / "results" / "tiny"
    write_table(m, study / "manifest.parquet", provenance(dataset=dataset_spec(cfg["dataset"])))
    check_dataset_spec(study / "manifest.parquet", copy.deepcopy(cfg["dataset"]))  # same block: accepted
    other = filled({**TINY["dataset"], "seed": 5})
    with pytest.raises(
        DatasetSpecMismatch, match=r"dataset\.seed: 0 -> 5.*use another study name, or delete"
    ):
        check_dataset_spec(study / "manifest.parquet", other["dataset"])


@pytest.mark.parametrize("triggers", [["--rerun-triggers", "mtime"], []])
def test_snakemake_refuses_a_reused_study(tmp_path, triggers):
    """With ``--rerun-triggers mtime``, or without the .snakemake records of the run that made it (a
    copied results folder), Snakemake would reuse results/tiny built from another dataset block: the
    dry run refuses it, naming the key. (With the records and the params trigger it rebuilds it.)"""
    cfg = filled(TINY["dataset"])
    m = pd.DataFrame({"image_id": ["a"], "source": ["x"], "label": ["c"], "split": ["val"]})
    write_table(
        m,
        tmp_path / "results" / "tiny" / "manifest.parquet",
        provenance(dataset=dataset_spec({**cfg["dataset"], "seed": 7})),
    )
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--cores",
        "1",
        "-n",
        "--configfile",
        "config/tiny.yaml",
        *triggers,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-2000:]
    assert "dataset.seed: 7 -> 0" in text and "use another study name" in text
