from neuronaudit.io import provenance, read_table
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.stage import load_probing_set, setting1_job, write_study_table

log = setup_job_log(snakemake.log[0])
w, s, study = snakemake.wildcards, snakemake.params.settings, snakemake.params.study
ps = load_probing_set(
    snakemake.input.manifest,
    snakemake.input.labels,
    snakemake.input.activations,
    {w.concept_model: snakemake.input.presence},
    split=s["split"],
    min_positives=s["min_positives"],
)
pairs = read_table(snakemake.input.pairs)
with timed(log, f"Setting 1 ({study}) {w.model}/{w.layer} guided by {w.concept_model}"):
    df = setting1_job(
        ps, pairs, w.model, w.layer, w.concept_model, s, study=study, n_threads=snakemake.threads
    )
meta = provenance(
    study=study,
    model=w.model,
    layer=w.layer,
    concept_model=w.concept_model,
    sampling=s,
    code=snakemake.params.code,
)
write_study_table(df, snakemake.output[0], meta=meta, excluded=ps.excluded)
