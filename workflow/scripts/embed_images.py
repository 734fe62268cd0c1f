from neuronaudit.concepts.stage import embed, embed_from_features
from neuronaudit.data.datasets import check_dataset_spec
from neuronaudit.data.images import max_failed_fraction
from neuronaudit.device import resolve_device, set_threads
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
check_dataset_spec(snakemake.input.manifest, snakemake.config["dataset"])
meta = provenance(spec=snakemake.params.spec, code=snakemake.params.code)
limit = max_failed_fraction(snakemake.config)  # images.max_failed_fraction
with timed(log, f"embedding images with {snakemake.wildcards.concept_model}"):
    if "features" in snakemake.input.keys():
        embed_from_features(snakemake.params.spec, snakemake.input.features, snakemake.input.manifest,
                            snakemake.output.embeddings, meta=meta, report_out=snakemake.output.report,
                            max_failed_fraction=limit)
    else:
        embed(
            snakemake.params.spec,
            snakemake.input.manifest,
            snakemake.output.embeddings,
            batch_size=snakemake.params.settings["batch_size"],
            device=resolve_device(snakemake.params.device),
            meta=meta,
            report_out=snakemake.output.report,
            max_failed_fraction=limit,
        )
