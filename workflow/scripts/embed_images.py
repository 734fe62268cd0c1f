from neuronaudit.concepts.stage import embed, embed_from_features
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.runtime import resolve_device, set_threads

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
meta = provenance(spec=snakemake.params.spec, code=snakemake.params.code)
with timed(log, f"embedding images with {snakemake.wildcards.concept_model}"):
    if "features" in snakemake.input.keys():
        embed_from_features(snakemake.params.spec, snakemake.input.features, snakemake.input.manifest,
                            snakemake.output[0], meta=meta)
    else:
        embed(
            snakemake.params.spec,
            snakemake.input.manifest,
            snakemake.output[0],
            batch_size=snakemake.params.settings["batch_size"],
            device=resolve_device(snakemake.params.device),
            meta=meta,
        )
