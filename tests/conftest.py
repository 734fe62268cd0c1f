import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def foolbox_dir() -> Path:
    import foolbox

    return Path(foolbox.__file__).parent / "data"


@pytest.fixture(scope="session")
def imagenet_jpegs(foolbox_dir) -> list[tuple[Path, int]]:
    """foolbox's 20 real ImageNet validation JPEGs with their class index (from the file name)."""
    files = sorted(foolbox_dir.glob("imagenet_*.jpg"))
    return [(f, int(f.stem.split("_")[-1])) for f in files]
