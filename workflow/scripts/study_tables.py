from neuronaudit.io import read_table
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.stage import setting1_tables, setting2_tables, write_csv_tables

log = setup_job_log(snakemake.log[0])
i, p = snakemake.input, snakemake.params
with timed(log, "study tables"):
    tables = setting1_tables(
        read_table(i.rce), read_table(i.gamma), read_table(i.alpha), floor=p.floor, table_n=p.table_n
    )
    tables.update(setting2_tables(read_table(i.setting2), beta=p.beta, floor=p.floor))
write_csv_tables(tables, {name: snakemake.output[name] for name in tables})
