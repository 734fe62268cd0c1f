from neuronaudit.crowd.simulate import run_simulate
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
with timed(log, "simulated MTurk workers"):
    run_simulate(
        batch_path=inp.batch,
        items_path=inp.item_table,
        manifest_path=inp.manifest,
        labels_path=inp.labels,
        guide_path=inp.guide,
        settings=snakemake.params.settings,
        outs={"answers": out.answers, "truth": out.truth},
    )
