rule build_dataset:
    input:
        unpack(dataset_guard),
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        report=f"{RESULTS}/dataset_report.json",
    log:
        f"logs/{STUDY}/build_dataset.log",
    benchmark:
        f"benchmarks/{STUDY}/build_dataset.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        dataset=canon(config["dataset"]),
        code=script_code("build_dataset.py"),
    script:
        "../scripts/build_dataset.py"
