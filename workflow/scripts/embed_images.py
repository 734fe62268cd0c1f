from neuronaudit.concepts.stage import embed
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.runtime import resolve_device, set_threads

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
with timed(log, f"embedding images with {snakemake.wildcards.concept_model}"):
    embed(
        snakemake.params.spec,
        snakemake.input.manifest,
        snakemake.output[0],
        batch_size=snakemake.params.settings["batch_size"],
        device=resolve_device(snakemake.params.device),
        meta=provenance(spec=snakemake.params.spec, code=snakemake.params.code),
    )
