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


rule build_dataset:
    input:
        unpack(dataset_guard),
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        report=f"{RESULTS}/dataset_report.json",
    log:
        f"logs/{STUDY}/build_dataset.log",
    benchmark:
        f"benchmarks/{STUDY}/build_dataset.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        dataset=canon(config["dataset"]),
        code=script_code("build_dataset.py"),
    script:
        "../scripts/build_dataset.py"
