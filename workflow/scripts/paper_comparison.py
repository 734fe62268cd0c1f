# Our numbers beside the papers' (report.smk, rule paper_comparison; docs/report.md): the study's
# tables in, tables/paper_comparison.{csv,md} out.
import json
from pathlib import Path

import pandas as pd

from neuronaudit.io import atomic_path, write_csv
from neuronaudit.logs import setup_job_log
from neuronaudit.report.comparison import compare, load_paper_values, to_markdown

log = setup_job_log(snakemake.log[0])
p = snakemake.params
tables, files = {}, {}
for name, path in snakemake.input.items():
    if name == "paper_values":
        continue
    if name.startswith("json_"):
        key = name[len("json_"):].replace("__", ":")
        files[key] = json.loads(Path(path).read_text())
    else:
        tables[name] = pd.read_csv(path)
        log.info("%s: %d rows from %s", name, len(tables[name]), path)
study = dict(p.study)
entries = load_paper_values(snakemake.input.paper_values)
table = compare(tables, study, files, entries)
write_csv(table, snakemake.output.csv)
with atomic_path(snakemake.output.md) as tmp:
    tmp.write_text(to_markdown(table, study), encoding="utf-8")
log.info("%d rows for %d paper values; %d comparable like for like", len(table), table["id"].nunique(),
         int((table["comparable"] == "yes").sum()))
