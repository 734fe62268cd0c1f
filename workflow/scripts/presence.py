import pandas as pd

from neuronaudit.concepts.stage import presence
from neuronaudit.data.vocabularies import vocabulary_concepts
from neuronaudit.device import set_threads
from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
labels = pd.read_parquet(snakemake.input.labels, columns=["concept", "kind"])
concepts = vocabulary_concepts(snakemake.params.vocabulary, labels)
with timed(log, f"presence of {len(concepts)} concepts ({snakemake.wildcards.vocabulary})"):
    presence(
        snakemake.params.spec,
        snakemake.input.state,
        snakemake.input.embeddings,
        concepts,
        snakemake.output[0],
        meta=provenance(vocabulary=snakemake.wildcards.vocabulary, code=snakemake.params.code),
    )
