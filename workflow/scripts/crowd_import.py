from neuronaudit.crowd.answers import run_import
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
with timed(log, f"import of {len(snakemake.params.answers)} answer file(s)"):
    run_import(
        answers=list(snakemake.params.answers),
        tasks_path=snakemake.input.tasks,
        store_path=snakemake.output.ratings,
        raters_per_input=snakemake.params.raters_per_input,
        report_path=snakemake.output.report,
    )
