# The crowd stage (issue 9; docs/crowd.md): MG-IS task design for chosen explanations, the MTurk export,
# simulated workers answering in MTurk's results format, the import of every answer file, and the BRAgg
# estimates and tables. All files of a study live in results/{study}/crowd/.
# Snakemake reserves the name "items" (input/output/params are lists with an .items() method), so
# CROWD/items.parquet is named item_table in every rule (snakemake.input.item_table).


rule crowd_design:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        guide=crowd_guide_file(),
        activations=[f"{RESULTS}/activations/{k}.parquet" for k in crowd_layers()],
        explanations=list(crowd_files("explanations").values()),
        scores=list(crowd_files("scores").values()),
    output:
        explanations=f"{CROWD_DIR}/explanations.parquet",
        design=f"{CROWD_DIR}/design.parquet",
        item_table=f"{CROWD_DIR}/items.parquet",
        tasks=f"{CROWD_DIR}/tasks.parquet",
    log:
        f"logs/{STUDY}/crowd_design.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_design.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        activations={k: f"{RESULTS}/activations/{k}.parquet" for k in crowd_layers()},
        explanations=crowd_files("explanations"),
        settings=crowd_design_settings(),
        simulate_truth=CROWD["simulate"]["enabled"],
        code=script_code("crowd_design.py"),
    script:
        "../scripts/crowd_design.py"


rule crowd_export:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        explanations=f"{CROWD_DIR}/explanations.parquet",
        design=f"{CROWD_DIR}/design.parquet",
        tasks=f"{CROWD_DIR}/tasks.parquet",
    output:
        batch=f"{CROWD_DIR}/mturk/batch_input.csv",
        html=f"{CROWD_DIR}/mturk/task.html",
        images=directory(f"{CROWD_DIR}/images"),
        cost=f"{CROWD_DIR}/cost.json",
    log:
        f"logs/{STUDY}/crowd_export.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_export.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        settings=canon(
            {
                k: CROWD[k]
                for k in (
                    "images_per_task",
                    "gold_per_task",
                    "raters_per_input",
                    "image_size",
                    "mturk",
                )
            }
        ),
        code=script_code("crowd_export.py"),
    script:
        "../scripts/crowd_export.py"


rule crowd_simulate:
    input:
        batch=f"{CROWD_DIR}/mturk/batch_input.csv",
        item_table=f"{CROWD_DIR}/items.parquet",
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        guide=crowd_guide_file(),
    output:
        answers=f"{CROWD_DIR}/answers/mturk_simulated.csv",
        truth=f"{CROWD_DIR}/truth.parquet",
    log:
        f"logs/{STUDY}/crowd_simulate.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_simulate.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        settings=canon(
            {
                k: CROWD[k]
                for k in (
                    "seed",
                    "raters_per_input",
                    "simulate",
                    "mturk",
                    "guide",
                    "split",
                )
            }
        ),
        code=script_code("crowd_simulate.py"),
    script:
        "../scripts/crowd_simulate.py"


rule crowd_import:
    input:
        tasks=f"{CROWD_DIR}/tasks.parquet",
        answers=crowd_answer_files(),
    output:
        ratings=f"{CROWD_DIR}/ratings.parquet",
        report=f"{CROWD_DIR}/import_report.json",
    log:
        f"logs/{STUDY}/crowd_import.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_import.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        answers=crowd_answer_files(),
        raters_per_input=CROWD["raters_per_input"],
        code=script_code("crowd_import.py"),
    script:
        "../scripts/crowd_import.py"


rule crowd_aggregate:
    input:
        unpack(crowd_aggregate_inputs),
    output:
        estimates=f"{CROWD_DIR}/estimates.parquet",
        presence=f"{CROWD_DIR}/soft_presence.parquet",
    log:
        f"logs/{STUDY}/crowd_aggregate.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_aggregate.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        aggregate=canon(CROWD["aggregate"]),
        raters_per_input=CROWD["raters_per_input"],
        code=crowd_script_code("crowd_aggregate.py"),
    script:
        "../scripts/crowd_aggregate.py"


rule crowd_tables:
    input:
        estimates=f"{CROWD_DIR}/estimates.parquet",
        ratings=f"{CROWD_DIR}/ratings.parquet",
        item_table=f"{CROWD_DIR}/items.parquet",
        presence=f"{CROWD_DIR}/soft_presence.parquet",
    output:
        **{
            k: (
                report(
                    v,
                    caption=f"../report/{CROWD_CAPTIONS[k]}",
                    category="Crowdsourced comparison",
                )
                if k in CROWD_CAPTIONS
                else v
            )
            for k, v in CROWD_TABLES.items()
        },
    log:
        f"logs/{STUDY}/crowd_tables.log",
    benchmark:
        f"benchmarks/{STUDY}/crowd_tables.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        aggregate=canon(CROWD["aggregate"]),
        raters_per_input=CROWD["raters_per_input"],
        code=crowd_script_code("crowd_tables.py"),
    script:
        "../scripts/crowd_tables.py"
