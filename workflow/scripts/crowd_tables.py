"""Rule crowd_tables: Tables 3/6 (+ Markdown), Table 7 t-tests, Fleiss' kappa, the rater report and the
figure of per-explanation estimates (neuronaudit.crowd.report)."""

import matplotlib.pyplot as plt

from neuronaudit.crowd import report
from neuronaudit.crowd.ratings import read_store
from neuronaudit.io import atomic_path, read_table, write_csv
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
agg = dict(p.aggregate or {})
estimates, presence = read_table(i.estimates), read_table(i.presence)
with timed(log, "crowd tables"):
    write_csv(report.table3(estimates), o.table3)
    with atomic_path(o.table3_md) as tmp:
        tmp.write_text(report.table3_markdown(estimates) + "\n")
    write_csv(report.ttest_table(estimates), o.ttest)
    planned = getattr(p, "raters_per_input", None) or agg.get("raters_per_input")
    write_csv(report.agreement_table(presence, planned), o.agreement)
    write_csv(report.rater_table(read_store(i.ratings), read_table(i.item_table), presence), o.raters)
    fig = report.estimates_figure(estimates)
    for out in (o.figure_png, o.figure_pdf):
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=150)
    plt.close(fig)
