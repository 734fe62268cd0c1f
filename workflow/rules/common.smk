# Helpers and input functions only; no rules.
import hashlib
import json
from pathlib import Path

from snakemake.exceptions import WorkflowError

from neuronaudit.activations.catalog import check_names
from neuronaudit.codehash import code_hash
from neuronaudit.config import ConfigError, validate_config

try:
    validate_config(
        config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None
try:  # a typo in an architecture fails here, not a minute into the run (cached once it passes)
    check_names(
        config["models"], config["concept_models"], cache_dir=".snakemake/neuronaudit"
    )
except ValueError as err:
    raise WorkflowError(str(err)) from None

STUDY = config["study"]
RESULTS = f"results/{STUDY}"
LIB = Path(workflow.basedir) / "src" / "neuronaudit"
# Threads of the multi-threaded stages (model forward passes, explainers, concept models): half the
# cores, so that independent branches run side by side (the concept models' image features beside
# the target models' activations, one explain job beside another). With 2 threads on the 2-core
# default machine these stages kept 1.0-1.6 cores busy (benchmarks/default/*.tsv: cpu_time / s), and a
# Lite0 forward pass does 254 images per CPU-second on one thread against 174 on two.
STAGE_THREADS = max(1, workflow.cores // 2)


wildcard_constraints:
    study=r"[A-Za-z0-9_.-]+",
    model=r"[A-Za-z0-9_-]+",
    layer=r"[A-Za-z0-9_-]+",
    concept_model=r"[A-Za-z0-9_-]+",
    vocabulary=r"[A-Za-z0-9_-]+",
    backbone=r"[A-Za-z0-9_-]+",


def script_code(script):
    """Hash of the library code a script runs: its whole import closure (docs/caching.md).

    Snakemake reruns a job when its params change; library modules are not the script, so each rule
    passes this hash as its ``code`` param. The modules are found from the script's imports
    (transitively, lazy imports included), so no list is kept by hand. Computed once per script and
    Snakemake call (the rule of every model of a sweep shares it; benchmarks/bench_dag.py).
    """
    if script not in _SCRIPT_CODE:
        _SCRIPT_CODE[script] = code_hash(
            [Path(workflow.basedir) / "workflow" / "scripts" / script], LIB
        )
    return _SCRIPT_CODE[script]


_SCRIPT_CODE = {}


def canon(obj):
    """The same value with dict keys sorted at every level: Snakemake compares params by their
    text, so reordering keys in a config file must not rerun anything."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list | tuple):
        return [canon(v) for v in obj]
    return obj


def model_spec(model):
    if model not in config["models"]:
        raise ValueError(
            f"unknown model {model!r}; configured: {sorted(config['models'])}"
        )
    return canon(config["models"][model])


def concept_model_spec(name):
    if name not in config["concept_models"]:
        raise ValueError(
            f"unknown concept model {name!r}; configured: {sorted(config['concept_models'])}"
        )
    return canon(config["concept_models"][name])


def vocabulary_spec(name):
    if name not in config["vocabularies"]:
        raise ValueError(
            f"unknown vocabulary {name!r}; configured: {sorted(config['vocabularies'])}"
        )
    return canon(config["vocabularies"][name])


def device():
    return config.get("device", "auto")


def gpus():
    """GPUs a GPU-capable job asks a cluster for (resource ``gpu``; docs/cluster.md): none when the
    study pins ``device: cpu``, else one. Locally it only limits anything with ``--resources gpu=N``.
    """
    return 0 if str(device()).lower() == "cpu" else 1


def mem_mb(factor=4, base=1000):
    """Resource callable: memory from the data a job reads, ``base + factor * input size`` MB, doubled
    on each retry (docs/cluster.md). Evaluated when the job is ready, so its inputs exist.
    """

    def mem(wildcards, input, attempt):
        return int((base + factor * input.size_mb) * attempt)

    return mem


def model_checkpoint(model):
    """Inputs a model's extraction needs beyond the manifest: the trained checkpoint for small_cnn."""
    if model_spec(model)["source"] == "small_cnn":
        return f"{RESULTS}/models/{model}.pt"
    return []


def activation_files(model):
    return [
        f"{RESULTS}/activations/{model}/{layer}.parquet"
        for layer in model_spec(model)["layers"]
    ]


def backbone_of(concept_model):
    """Pooled-feature backbone a concept model shares with others (conse, probe), or None."""
    from neuronaudit.concepts.backbones import shared_backbone

    return shared_backbone(concept_model_spec(concept_model))


def backbone_spec(key):
    from neuronaudit.concepts.backbones import backbone_key

    for cm in config["concept_models"]:
        b = backbone_of(cm)
        if b is not None and backbone_key(b) == key:
            return canon(b)
    raise ValueError(f"no configured concept model uses the backbone {key!r}")


def embed_inputs(wildcards):
    from neuronaudit.concepts.backbones import backbone_key

    inputs = {"manifest": f"{RESULTS}/manifest.parquet"}
    b = backbone_of(wildcards.concept_model)
    if b is not None:
        inputs["features"] = f"{RESULTS}/features/{backbone_key(b)}.parquet"
    return inputs


def concept_model_inputs(wildcards):
    return {
        "embeddings": f"{RESULTS}/embeddings/{wildcards.concept_model}.parquet",
        "manifest": f"{RESULTS}/manifest.parquet",
        "labels": f"{RESULTS}/labels.parquet",
    }


def all_targets():
    targets = [f"{RESULTS}/manifest.parquet", f"{RESULTS}/labels.parquet"]
    for model in config["models"]:
        targets += activation_files(model)
    for cm in config["concept_models"]:
        targets.append(f"{RESULTS}/embeddings/{cm}.parquet")
    for cm, vocab in config.get("presence", []):
        concept_model_spec(cm)
        vocabulary_spec(vocab)
        targets.append(f"{RESULTS}/presence/{cm}/{vocab}.parquet")
    targets += explain_targets()  # defined in explain.smk, included after this file
    targets += study_targets()
    targets += line_targets()  # defined in line.smk
    targets += crowd_targets()  # defined in crowd.smk
    targets += report_targets()  # defined in report.smk
    return targets


def _snakemake_rebuilds(path):
    """Whether Snakemake will rebuild ``path`` because its params changed: the ``params`` rerun
    trigger is on and it holds the record of the run that made the file (unknown -> True).
    """
    try:
        if "params" not in {
            getattr(t, "name", str(t)).lower() for t in workflow.rerun_triggers
        }:
            return False
    except Exception:
        return True
    try:
        from snakemake.io import IOFile

        return workflow.persistence.metadata(IOFile(str(path))) is not None
    except Exception:
        return True


def dataset_guard(wildcards):
    """No inputs; evaluated when the DAG is built. Refuses a results folder built from another dataset
    block when Snakemake would not rebuild its manifest (``--rerun-triggers`` without ``params``, or a
    results folder without its .snakemake records, e.g. copied from elsewhere): its old results would
    be reused and mixed with new ones. When Snakemake does rebuild it, everything after it reruns; each
    job that reads the manifest checks it again (check_dataset_spec)."""
    import sys

    from snakemake.exceptions import WorkflowError

    from neuronaudit.data.datasets import DatasetSpecMismatch, check_dataset_spec

    manifest = Path(f"{RESULTS}/manifest.parquet")
    if not manifest.exists():
        return {}
    try:
        check_dataset_spec(manifest, config["dataset"])
    except DatasetSpecMismatch as exc:
        if not _snakemake_rebuilds(manifest):
            raise WorkflowError(str(exc)) from None
        print(
            f"Note: the config's dataset block differs from the one {manifest} was built from; "
            "it is rebuilt and everything after it reruns.",
            file=sys.stderr,
        )
    except Exception:  # an unreadable manifest is rebuilt by its job, not refused here
        pass
    return {}
