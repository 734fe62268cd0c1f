import os
import re
import shutil
import subprocess
import sys
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


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_rules(workdir: Path) -> dict[str, int]:
    """Rules (and job counts) a dry run would execute."""
    out = run_snakemake(workdir, "-n").stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M) if m.group(1) != "total"}


def copy_workflow(work: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, config, library...) in ``work``, as a user's checkout."""
    work.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "config", "src", "profiles", "envs", "requirements.txt"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, work / item)
    return work


def snakemake_cmd(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``workdir`` exactly as a user types it (no --configfile added)."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env, capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole workflow run once on config/tiny.yaml in a temporary copy (shared by e2e tests)."""
    work = copy_workflow(tmp_path_factory.mktemp("tiny"))
    run_snakemake(work)
    return work


