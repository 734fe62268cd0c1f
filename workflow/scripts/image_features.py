from neuronaudit.concepts.stage import image_features
from neuronaudit.data.datasets import check_dataset_spec
from neuronaudit.data.images import max_failed_fraction
from neuronaudit.device import resolve_device, set_threads
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
check_dataset_spec(snakemake.input.manifest, snakemake.config["dataset"])
spec = snakemake.params.model
with timed(log, f"pooled features of {snakemake.wildcards.backbone}"):
    image_features(
        spec,
        snakemake.input.manifest,
        snakemake.output.acts,
        snakemake.output.report,
        batch_size=snakemake.params.settings["batch_size"],
        device=resolve_device(snakemake.params.device),
        max_failed_fraction=max_failed_fraction(snakemake.config),  # images.max_failed_fraction
        meta=provenance(backbone=snakemake.wildcards.backbone, spec=spec, code=snakemake.params.code),
    )
