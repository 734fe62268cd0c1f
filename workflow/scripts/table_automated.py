from pathlib import Path

import pandas as pd

from neuronaudit.io import write_csv
from neuronaudit.logs import setup_job_log
from neuronaudit.studies.automated import automated_tables

log = setup_job_log(snakemake.log[0])
frames = {str(p): pd.read_parquet(p) for p in snakemake.input}
scores = pd.concat(list(frames.values()), ignore_index=True)
simple, complex_ = automated_tables(scores)
# a method with no explanations on a layer (e.g. a header-only import) stays in Table 1 with n_neurons 0;
# score files are .../scores/<model>/<layer>/<method>.parquet
empty = [Path(p) for p, f in frames.items() if not len(f)]
if empty:
    scorers = sorted(scores["concept_model"].dropna().unique()) or [""]
    extra = [{**{c: float("nan") for c in simple.columns}, "model": p.parent.parent.name, "layer": p.parent.name,
              "method": p.stem, "concept_model": cm, "n_neurons": 0, "n_scored": 0, "n_nan": 0,
              "mean_pm_sem": "n/a (no explanations)", "compared_on": "no explanations",
              "max_length": 0}
             for p in empty for cm in scorers]
    simple = pd.concat([simple, pd.DataFrame(extra, columns=simple.columns)], ignore_index=True)
    log.warning("no explanations (kept in table 1 with n_neurons 0): %s",
                ", ".join(f"{p.parent.parent.name}/{p.parent.name} {p.stem}" for p in empty))
write_csv(simple, snakemake.output.simple)
write_csv(complex_, snakemake.output.complex)
log.info("table 1 (l = 1):\n%s", simple.to_string(index=False))
log.info("table 2 (l > 1):\n%s", complex_.to_string(index=False))
