from neuronaudit.activations.extract import extract_activations
from neuronaudit.activations.models import load_model
from neuronaudit.data.images import ImageSource
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.runtime import resolve_device, set_threads

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
spec = snakemake.params.model
with timed(log, f"pooled features of {snakemake.wildcards.backbone}"):
    report = extract_activations(
        ImageSource.from_manifest(snakemake.input.manifest),
        load_model(spec),
        spec["layers"],
        {"features": snakemake.output.acts},
        batch_size=snakemake.params.settings["batch_size"],
        device=resolve_device(snakemake.params.device),
        meta=provenance(backbone=snakemake.wildcards.backbone, spec=spec, code=snakemake.params.code),
    )
report.write(snakemake.output.report)
