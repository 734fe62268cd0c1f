# One table of the paper in its layout (report.smk): the long table in, CSV and Markdown out.
import pandas as pd

from neuronaudit.io import atomic_path, write_csv
from neuronaudit.logs import setup_job_log
from neuronaudit.report.paper_tables import paper_table

log = setup_job_log(snakemake.log[0])
p = snakemake.params
long = pd.read_csv(snakemake.input.long)
log.info("%s: %d long rows from %s", p.table, len(long), snakemake.input.long)
table, markdown = paper_table(p.table, long, dict(p.settings))
write_csv(table, snakemake.output.csv)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(markdown, encoding="utf-8")
log.info("wrote %s (%d rows x %d columns) and %s", snakemake.output.csv, *table.shape, snakemake.output.md)
