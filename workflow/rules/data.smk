rule build_dataset:
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
    log:
        f"logs/{STUDY}/build_dataset.log",
    benchmark:
        f"benchmarks/{STUDY}/build_dataset.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        dataset=canon(config["dataset"]),
        code=code_version("data"),
    script:
        "../scripts/build_dataset.py"
