rule image_features:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        acts=f"{RESULTS}/features/{{backbone}}.parquet",
        report=f"{RESULTS}/features/{{backbone}}.report.json",
    log:
        f"logs/{STUDY}/image_features/{{backbone}}.log",
    benchmark:
        f"benchmarks/{STUDY}/image_features/{{backbone}}.tsv"
    # first when cores are free: the head of the longest chain (features, concept models, presence,
    # explanations, scores, the crowd path), the largest job of the default study
    priority: 10
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        gpu=gpus(),
    params:
        model=lambda wc: backbone_spec(wc.backbone),
        settings=canon(config["embedding"]),
        device=device(),
        code=script_code("image_features.py"),
    script:
        "../scripts/image_features.py"


rule embed_images:
    input:
        unpack(embed_inputs),
    output:
        embeddings=f"{RESULTS}/embeddings/{{concept_model}}.parquet",
        report=f"{RESULTS}/embeddings/{{concept_model}}.report.json",
    log:
        f"logs/{STUDY}/embed_images/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/embed_images/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        gpu=gpus(),
    params:
        spec=lambda wc: concept_model_spec(wc.concept_model),
        settings=canon(config["embedding"]),
        device=device(),
        code=script_code("embed_images.py"),
    script:
        "../scripts/embed_images.py"


rule fit_concept_model:
    input:
        unpack(concept_model_inputs),
    output:
        state=f"{RESULTS}/concept_models/{{concept_model}}.npz",
        summary=f"{RESULTS}/concept_models/{{concept_model}}.json",
    log:
        f"logs/{STUDY}/fit_concept_model/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/fit_concept_model/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        mem_mb=mem_mb(),
    params:
        spec=lambda wc: concept_model_spec(wc.concept_model),
        grid=canon(config["calibration"]),
        code=script_code("fit_concept_model.py"),
    script:
        "../scripts/fit_concept_model.py"


rule presence:
    input:
        embeddings=f"{RESULTS}/embeddings/{{concept_model}}.parquet",
        state=f"{RESULTS}/concept_models/{{concept_model}}.npz",
        labels=f"{RESULTS}/labels.parquet",
    output:
        f"{RESULTS}/presence/{{concept_model}}/{{vocabulary}}.parquet",
    log:
        f"logs/{STUDY}/presence/{{concept_model}}/{{vocabulary}}.log",
    benchmark:
        f"benchmarks/{STUDY}/presence/{{concept_model}}/{{vocabulary}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        mem_mb=mem_mb(),
    params:
        spec=lambda wc: concept_model_spec(wc.concept_model),
        vocabulary=lambda wc: vocabulary_spec(wc.vocabulary),
        code=script_code("presence.py"),
    script:
        "../scripts/presence.py"
