import pandas as pd

from neuronaudit.data.vocabularies import vocabulary_concepts
from neuronaudit.explainers.line.polysemanticity import layer_table, neuron_polysemanticity
from neuronaudit.explainers.line.stage import TextEmbedder
from neuronaudit.io import read_meta, read_table, write_csv
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
par = snakemake.params
with timed(log, f"LINE polysemanticity of {len(snakemake.input.histories)} layer histories"):
    reference = vocabulary_concepts(par.reference, pd.read_parquet(snakemake.input.labels))
    embed = TextEmbedder()
    tables = {}
    for path in snakemake.input.histories:
        meta = read_meta(path)
        tables[(meta["model"], meta["layer"], meta["method"])] = neuron_polysemanticity(
            read_table(path), embed, reference, par.settings["threshold"], par.settings["distinct_similarity"])
    out = layer_table(tables, par.settings, par.settings["reference_vocabulary"], len(reference))
    write_csv(out, snakemake.output[0])
    log.info("\n%s", out.to_string(index=False))
