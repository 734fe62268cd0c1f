from neuronaudit.concepts.stage import fit
from neuronaudit.data.datasets import check_dataset_spec
from neuronaudit.device import set_threads
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
check_dataset_spec(snakemake.input.manifest, snakemake.config["dataset"])
with timed(log, f"fitting {snakemake.wildcards.concept_model}"):
    fit(
        snakemake.params.spec,
        snakemake.input.embeddings,
        snakemake.input.manifest,
        snakemake.input.labels,
        snakemake.output.state,
        snakemake.output.summary,
        grid=snakemake.params.grid,
    )
