rule train_small_cnn:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        checkpoint=f"{RESULTS}/models/{{model}}.pt",
        metrics=f"{RESULTS}/models/{{model}}.json",
    log:
        f"logs/{STUDY}/train_small_cnn/{{model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/train_small_cnn/{{model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    params:
        model=lambda wc: model_spec(wc.model),
        code=script_code("train_small_cnn.py"),
    script:
        "../scripts/train_small_cnn.py"


# One job per model: a single forward pass feeds every configured layer of that model.
for _model in config["models"]:

    rule:
        name:
            f"extract_activations_{_model}"
        input:
            manifest=f"{RESULTS}/manifest.parquet",
            checkpoint=model_checkpoint(_model),
        output:
            acts=activation_files(_model),
            report=f"{RESULTS}/activations/{_model}/extraction_report.json",
        log:
            f"logs/{STUDY}/extract_activations/{_model}.log",
        benchmark:
            f"benchmarks/{STUDY}/extract_activations/{_model}.tsv"
        conda:
            "../../envs/neuronaudit.yaml"
        threads: STAGE_THREADS
        resources:
            gpu=gpus(),
        params:
            model_name=_model,
            model=model_spec(_model),
            settings=canon(config["activations"]),
            device=device(),
            code=script_code("extract_activations.py"),
        script:
            "../scripts/extract_activations.py"
