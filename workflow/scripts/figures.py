import pandas as pd

from neuronaudit.io import atomic_path
from neuronaudit.logs import setup_job_log
from neuronaudit.report import figures

log = setup_job_log(snakemake.log[0])
drawings = {
    "setting1": figures.rce_vs_samples,
    "table4": figures.rce_by_guide_auc,
    "setting2": figures.error_vs_cost,
    "table1": figures.automated_scores,
    "table2": figures.automated_scores,
}
for key, draw in drawings.items():
    fig = draw(pd.read_csv(snakemake.input[key]))
    with atomic_path(snakemake.output[key]) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
    log.info("wrote %s", snakemake.output[key])
