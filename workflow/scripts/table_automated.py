import pandas as pd

from neuronaudit.logs import setup_job_log
from neuronaudit.studies.automated import automated_tables

log = setup_job_log(snakemake.log[0])
scores = pd.concat([pd.read_parquet(p) for p in snakemake.input], ignore_index=True)
simple, complex_ = automated_tables(scores)
simple.to_csv(snakemake.output.simple, index=False)
complex_.to_csv(snakemake.output.complex, index=False)
log.info("table 1 (l = 1):\n%s", simple.to_string(index=False))
log.info("table 2 (l > 1):\n%s", complex_.to_string(index=False))
