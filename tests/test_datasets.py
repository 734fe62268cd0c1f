import shutil

import numpy as np
import pandas as pd
import pytest

from neuronaudit.data.attributes import attribute_presence
from neuronaudit.data.datasets import DatasetError, build_dataset, labels_matrix
from neuronaudit.data.images import ImageSource, open_image, read_idx

from .conftest import FMNIST


def test_fashion_mnist_manifest_and_labels():
    manifest, labels = build_dataset({"adapter": "fashion_mnist", "root": str(FMNIST),
                                      "splits": {"train": 50, "val": 60, "test": 40}, "seed": 1})
    assert manifest["split"].value_counts().to_dict() == {"train": 50, "val": 60, "test": 40}
    assert manifest["image_id"].is_unique
    assert manifest[manifest.split == "train"]["image_id"].str.startswith("fmnist-train").all()
    assert manifest[manifest.split != "train"]["image_id"].str.startswith("fmnist-test").all()
    # labels are dense: every image x every concept
    n_concepts = labels["concept"].nunique()
    assert len(labels) == len(manifest) * n_concepts
    Y, concepts = labels_matrix(labels, manifest["image_id"])
    # the class concept agrees with the manifest label, and superclasses follow the written hierarchy
    for c in ["sneaker", "bag"]:
        np.testing.assert_array_equal(Y[:, concepts.index(c)], (manifest["label"] == c).to_numpy())
    foot = manifest["label"].isin(["sandal", "sneaker", "ankle boot"]).to_numpy()
    np.testing.assert_array_equal(Y[:, concepts.index("footwear")], foot)
    assert {"dark", "bright", "wide", "tall", "large", "textured"} <= set(concepts)
    # the idx label file agrees with the manifest for a decoded image
    row = manifest.iloc[0]
    idx = int(row["source"].rpartition("#")[2])
    raw = read_idx(str(FMNIST / "train-labels-idx1-ubyte.gz"))[idx]
    from neuronaudit.data.datasets import FASHION_MNIST_CLASSES
    assert FASHION_MNIST_CLASSES[raw] == row["label"]
    assert open_image(row["source"]).size == (28, 28)


def test_splits_are_seeded_and_disjoint():
    cfg = {"adapter": "fashion_mnist", "root": str(FMNIST), "splits": {"val": 30, "test": 30}, "compute_attributes": False}
    m1, _ = build_dataset({**cfg, "seed": 3})
    m2, _ = build_dataset({**cfg, "seed": 3})
    m3, _ = build_dataset({**cfg, "seed": 4})
    pd.testing.assert_frame_equal(m1, m2)
    assert set(m1.image_id) != set(m3.image_id)
    assert not set(m1[m1.split == "val"].image_id) & set(m1[m1.split == "test"].image_id)


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        build_dataset({"adapter": "fashion_mnist", "root": str(tmp_path)})


def test_too_large_split_names_the_key():
    with pytest.raises(DatasetError, match="dataset.splits.val"):
        build_dataset({"adapter": "fashion_mnist", "root": str(FMNIST), "splits": {"val": 10**6}})


def test_image_folder_class_layout_and_flat_csv(tmp_path, imagenet_jpegs):
    # class-folder layout with WordNet-id-like names is kept as given when WordNet is off
    for f, cls in imagenet_jpegs[:6]:
        d = tmp_path / "tree" / f"class{cls}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, d / f.name)
    m, labels = build_dataset({"adapter": "image_folder", "root": str(tmp_path / "tree"), "splits": {"val": None},
                               "wordnet_superclasses": False})
    assert len(m) == 6 and set(m["label"]) == {f"class{c}" for _, c in imagenet_jpegs[:6]}
    assert set(labels.loc[labels.kind == "attribute", "concept"]) >= {"dark", "bright", "colorful"}
    # flat folder plus labels CSV
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = []
    for f, cls in imagenet_jpegs[:4]:
        shutil.copy(f, flat / f.name)
        rows.append((f.name, f"c{cls}"))
    pd.DataFrame(rows, columns=["filename", "label"]).to_csv(tmp_path / "labels.csv", index=False)
    m2, _ = build_dataset({"adapter": "image_folder", "root": str(flat), "labels_csv": str(tmp_path / "labels.csv"),
                           "splits": {"val": None}, "wordnet_superclasses": False})
    assert sorted(m2["label"]) == sorted(r[1] for r in rows)
    src = ImageSource.from_manifest(m2)
    assert src.load(0).mode == "RGB"


def test_labels_csv_errors_name_the_line(tmp_path):
    (tmp_path / "labels.csv").write_text("filename,label\na.jpg,cat\n,dog\n")
    with pytest.raises(DatasetError, match="line 3"):
        build_dataset({"adapter": "image_folder", "root": str(tmp_path), "labels_csv": str(tmp_path / "labels.csv")})


def test_attributes_exact_on_constructed_images():
    imgs = np.zeros((5, 28, 28), np.uint8)
    imgs[0, 2:26, 1:27] = 60  # large, dark
    imgs[1, 10:18, 12:16] = 250  # small, bright, tall
    imgs[2, 2:26, 2:26] = np.tile([0, 0, 255, 255], 6 * 24).reshape(24, 24)  # striped: textured
    imgs[3, 8:20, 8:20] = 200  # symmetric square
    imgs[4, 10:18, 2:26] = 150  # wide
    p = attribute_presence(imgs, black_background=True)
    assert p["large"][0] and p["dark"][0] and not p["bright"][0] and not p["small"][0]
    assert p["wide"][4] and not p["tall"][4] and not p["wide"][1]
    assert p["small"][1] and p["bright"][1] and p["tall"][1]
    assert p["textured"][2] and not p["textured"][3]
    assert p["symmetric"][3]


def test_image_folder_wordnet_ids_get_names_and_superclasses(tmp_path, imagenet_jpegs):
    """ImageNet-validation layout: WordNet-id class folders become readable class names, and their
    WordNet hypernyms become superclass concepts (foolbox's real ImageNet JPEGs)."""
    from neuronaudit.data.vocabularies import imagenet_wnids

    wnids = imagenet_wnids()
    for f, cls in imagenet_jpegs[:8]:
        d = tmp_path / wnids[cls]
        d.mkdir(exist_ok=True)
        shutil.copy(f, d / f.name)
    m, labels = build_dataset({"adapter": "image_folder", "root": str(tmp_path), "splits": {"val": None},
                               "compute_attributes": False})
    assert not m["label"].str.match(r"^n\d{8}$").any()
    kinds = labels.drop_duplicates("concept").set_index("concept")["kind"]
    assert (kinds == "class").sum() == m["label"].nunique()
    assert (kinds == "superclass").sum() >= 1
    Y, concepts = labels_matrix(labels, m["image_id"])
    sup = [c for c in concepts if kinds[c] == "superclass"]
    # a superclass is present exactly where one of its member classes is
    assert (Y[:, [concepts.index(c) for c in sup]].sum(0) >= 2).all()


def test_torchvision_adapter_by_name(tmp_path, imagenet_jpegs):
    """The torchvision adapter opens any torchvision.datasets class the user has on disk; here
    ImageFolder over real JPEGs (CIFAR/Places/ImageNet need their archives, absent offline)."""
    for f, cls in imagenet_jpegs[:5]:
        d = tmp_path / f"c{cls:04d}"
        d.mkdir(exist_ok=True)
        shutil.copy(f, d / f.name)
    m, _ = build_dataset({"adapter": "torchvision", "root": str(tmp_path), "torchvision": {"name": "ImageFolder"},
                          "splits": {"val": None}, "compute_attributes": False})
    assert len(m) == 5 and m["source"].str.startswith("torchvision:ImageFolder:").all()
    assert sorted(m["label"]) == sorted(f"c{c:04d}" for _, c in imagenet_jpegs[:5])
    img = ImageSource.from_manifest(m).load(0)
    assert img.mode == "RGB" and img.size == (512, 512)
    with pytest.raises(DatasetError, match="not a torchvision dataset"):
        build_dataset({"adapter": "torchvision", "root": str(tmp_path), "torchvision": {"name": "NoSuchSet"}})
