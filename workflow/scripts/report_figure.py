# One figure of the paper (report.smk): its long tables in, PNG and PDF out.
import pandas as pd

from neuronaudit.io import atomic_path
from neuronaudit.logs import setup_job_log
from neuronaudit.report import figures

log = setup_job_log(snakemake.log[0])
p = snakemake.params
settings = dict(p.settings)
tables = {name: pd.read_csv(path) for name, path in snakemake.input.items()}
for name, table in tables.items():
    log.info("%s: %d rows from %s", name, len(table), snakemake.input[name])
fig = figures.draw(p.figure, tables, settings)
for fmt in ("png", "pdf"):
    with atomic_path(snakemake.output[fmt]) as tmp:
        fig.savefig(tmp, format=fmt, dpi=settings.get("dpi", 130), bbox_inches="tight")
    log.info("wrote %s", snakemake.output[fmt])
