from neuronaudit.explainers.stage import runtime_table
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
table = runtime_table(list(snakemake.input))
table.to_csv(snakemake.output[0], index=False)
log.info("runtime per method and layer:\n%s", table.to_string(index=False))
