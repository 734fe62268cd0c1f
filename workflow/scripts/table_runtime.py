from neuronaudit.explainers.stage import runtime_table
from neuronaudit.io import write_csv
from neuronaudit.logs import setup_job_log

log = setup_job_log(snakemake.log[0])
table = runtime_table(list(snakemake.input))
write_csv(table, snakemake.output[0])
log.info("runtime per method and layer:\n%s", table.to_string(index=False))
