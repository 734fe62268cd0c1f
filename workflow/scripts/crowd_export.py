from neuronaudit.crowd.export import run_export
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
with timed(log, "MTurk export"):
    run_export(
        tasks_path=inp.tasks,
        design_path=inp.design,
        explanations_path=inp.explanations,
        manifest_path=inp.manifest,
        settings=snakemake.params.settings,
        outs={k: out[k] for k in ("batch", "html", "images", "cost")},
    )
