"""The config as users drive it: the default study with --config overrides, errors that name the key,
schema defaults that apply, architecture typos caught before any job (issue 7, items 2, 3, 9)."""

from __future__ import annotations

import pytest
import yaml

from neuronaudit.activations.catalog import check_names, names_to_check, unknown_names
from neuronaudit.config import ConfigError, load_config, validate_config

from .conftest import REPO, copy_workflow, snakemake_cmd


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("cfg"))


def test_default_config_gets_schema_defaults():
    cfg = load_config(REPO / "config" / "config.yaml")
    assert cfg["device"] == "auto"
    assert cfg["activations"]["batch_size"] == 64
    assert cfg["dataset"]["wordnet_superclasses"] is None
    # nested defaults inside a default-filled block
    assert cfg["dataset"]["seed"] == 0


def test_overrides_merge_like_snakemake():
    cfg = load_config(REPO / "config" / "config.yaml", overrides={"sampling": {"seeds": 2}, "study": "x"})
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert cfg["sampling"]["seeds"] == 2 and cfg["study"] == "x"
    # the rest of the block is kept, not replaced
    assert cfg["sampling"]["ns"] == base["sampling"]["ns"]


def test_error_names_key_path_and_close_match():
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cfg["dataset"]["seeed"] = 1
    cfg["dataset"]["splits"]["train"] = -3
    cfg["sampling"]["gammas"] = "a lot"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "3 problems" in msg
    assert "dataset: unknown key 'seeed' (did you mean 'seed'?)" in msg
    assert "dataset.splits.train: -3 is less than the minimum of 0" in msg
    assert "sampling.gammas: 'a lot' should be of type" in msg
    assert len(msg.splitlines()) < 10  # no schema dump


@pytest.mark.parametrize(
    "override",
    [
        ["study=other"],
        ["device=cpu"],
        ["sampling={seeds: 3, ns: [25, 50]}"],
        ["activations={batch_size: 32}"],
        ["dataset={splits: {train: 100, val: 100, test: 100}}"],
        ["explain={split: val}", "setting2={seeds: 2}"],
    ],
)
def test_dry_run_of_default_study_with_config_override(work, override):
    proc = snakemake_cmd(work, "-n", "--cores", "1", "--config", *override)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Job stats" in proc.stdout


def test_override_of_study_name_is_used(work):
    proc = snakemake_cmd(work, "-n", "--cores", "1", "--config", "study=renamed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/renamed/manifest.parquet" in proc.stdout
    assert "results/default/" not in proc.stdout


def test_bad_override_gives_short_error(work):
    proc = snakemake_cmd(work, "-n", "--cores", "1", "--config", "sampling={seedz: 3}")
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr  # Snakemake prints a WorkflowError on stdout
    assert "sampling: unknown key 'seedz' (did you mean 'seed' or 'seeds'?)" in err
    assert "config/README.md" in err
    assert len(err.splitlines()) < 40, err  # was ~1,100 lines of schema


def test_configfile_replaces_default(work):
    proc = snakemake_cmd(work, "-n", "--cores", "1", "--configfile", "config/tiny.yaml", "--config", "study=tiny2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/tiny2/" in proc.stdout
    # the default study's models are not merged in: tiny has lite0 and cnn only
    default_only = set(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["models"]) - {"lite0", "cnn"}
    for model in default_only:
        assert f"activations/{model}/" not in proc.stdout


def test_architecture_typo_fails_at_dag_time(work, tmp_path):
    extra = tmp_path / "typo.yaml"
    extra.write_text(yaml.safe_dump({"models": {"rn": {"source": "timm", "arch": "resnet5O", "layers": {"l4": "layer4"}}}}))
    proc = snakemake_cmd(work, "-n", "--cores", "1", "--configfile", "config/tiny.yaml", str(extra))
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "models.rn.arch: timm has no architecture 'resnet5O'" in out
    assert "resnet50" in out


def test_name_check_lists_each_bad_name_and_caches_a_pass(tmp_path):
    models = {
        "a": {"source": "timm", "arch": "resnet18"},
        "b": {"source": "torchvision", "arch": "vit_b_61"},
        "c": {"source": "efficientnet_lite", "variant": 0},
    }
    cms = {"clip": {"backend": "open_clip", "arch": "ViT-B-32"}, "p": {"backend": "probe"}}
    entries = names_to_check(models, cms)
    assert [e[0] for e in entries] == ["models.a.arch", "models.b.arch", "concept_models.clip.arch"]
    errors = unknown_names(entries)
    assert len(errors) == 1 and "vit_b_61" in errors[0] and "vit_b_16" in errors[0]
    with pytest.raises(ValueError, match="vit_b_61"):
        check_names(models, cms, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # a failure is never cached
    models["b"]["arch"] = "vit_b_16"
    check_names(models, cms, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("names-*.ok"))) == 1
