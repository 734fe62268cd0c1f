from neuronaudit.crowd.design import run_design
from neuronaudit.logs import setup_job_log, timed

log = setup_job_log(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
with timed(log, f"crowd design of {len(params.explanations)} explanation tables"):
    run_design(
        manifest_path=inp.manifest,
        labels_path=inp.labels,
        guide_path=inp.guide,
        activation_paths=params.activations,
        explanation_paths=params.explanations,
        score_paths=list(inp.scores),
        settings=params.settings,
        outs={"explanations": out.explanations, "design": out.design, "items": out.item_table, "tasks": out.tasks},
        simulate_truth=params.simulate_truth,
    )
