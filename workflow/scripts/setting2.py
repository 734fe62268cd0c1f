from neuronaudit.io import provenance, read_table
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.stage import load_probing_set, setting2_job, write_study_table

log = setup_job_log(snakemake.log[0])
w, s, probing = snakemake.wildcards, snakemake.params.settings, snakemake.params.probing
ps = load_probing_set(
    snakemake.input.manifest,
    snakemake.input.labels,
    snakemake.input.activations,
    {w.concept_model: snakemake.input.presence},
    split=probing["split"],
    min_positives=probing["min_positives"],
)
pairs = read_table(snakemake.input.pairs)
with timed(log, f"Setting 2 {w.model}/{w.layer} with prior {w.concept_model}"):
    df = setting2_job(ps, pairs, w.model, w.layer, w.concept_model, s)
meta = provenance(
    model=w.model, layer=w.layer, concept_model=w.concept_model, setting2=s, code=snakemake.params.code
)
write_study_table(df, snakemake.output[0], meta=meta, excluded=ps.excluded)
