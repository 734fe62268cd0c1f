from neuronaudit.device import resolve_device, set_threads
from neuronaudit.explainers.similarity import split_concept_matrix
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
wc, inp, settings = snakemake.wildcards, snakemake.input, snakemake.params.settings
with timed(log, f"{settings['values']} of {wc.concept_model} x {wc.vocabulary} on the probing split"):
    split_concept_matrix(
        snakemake.params.spec,
        inp.state,
        inp.embeddings,
        inp.manifest,
        snakemake.params.vocabulary,
        inp.labels,
        snakemake.output[0],
        values=settings["values"],
        split=snakemake.params.split,
        max_concepts=settings["max_concepts"],
        device=resolve_device(snakemake.params.device),
        meta={"vocabulary": wc.vocabulary, "code": snakemake.params.code},
    )
