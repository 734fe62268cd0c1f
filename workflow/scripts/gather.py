from neuronaudit.io import provenance
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.stage import gather, write_study_table

log = setup_job_log(snakemake.log[0])
with timed(log, f"gather {len(snakemake.input)} file(s)"):
    df = gather(list(snakemake.input))
write_study_table(
    df, snakemake.output[0], meta=provenance(parts=len(snakemake.input), code=snakemake.params.code)
)
