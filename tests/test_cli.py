"""The `neuronaudit` console script that pyproject.toml declares."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from .conftest import copy_workflow


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(cwd / "src") if cwd else os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "neuronaudit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_help_lists_commands():
    proc = _cli("--help")
    assert proc.returncode == 0
    assert "run" in proc.stdout and "config" in proc.stdout


def test_run_dry_run_on_default_study(tmp_path):
    work = copy_workflow(tmp_path / "w")
    proc = _cli("run", "-n", "--config", "study=clitest", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/clitest/manifest.parquet" in proc.stdout


def test_config_prints_defaults_and_rejects_bad_keys(tmp_path):
    work = copy_workflow(tmp_path / "w")
    proc = _cli("config", "config/tiny.yaml", "--config", "sampling={seeds: 2}", cwd=work)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["sampling"]["seeds"] == 2 and cfg["device"] == "cpu" and cfg["activations"]["batch_size"] == 64
    bad = _cli("config", "config/tiny.yaml", "--config", "studdy=x", cwd=work)
    assert bad.returncode == 1
    assert "unknown key 'studdy' (did you mean 'study'?)" in bad.stderr
