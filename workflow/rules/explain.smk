# Explanations of every configured (model, layer) on the probing split, their automated scores on the
# held-out split, and the tables built from them (docs/explain_stage.md).


rule explain_similarity:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        embeddings=f"{RESULTS}/embeddings/{{concept_model}}.parquet",
        state=f"{RESULTS}/concept_models/{{concept_model}}.npz",
    output:
        f"{RESULTS}/similarity/{{concept_model}}/{{vocabulary}}.parquet",
    log:
        f"logs/{STUDY}/explain_similarity/{{concept_model}}/{{vocabulary}}.log",
    benchmark:
        f"benchmarks/{STUDY}/explain_similarity/{{concept_model}}/{{vocabulary}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        gpu=gpus(),
        mem_mb=mem_mb(),
    params:
        spec=lambda wc: concept_model_spec(wc.concept_model),
        vocabulary=lambda wc: vocabulary_spec(wc.vocabulary),
        settings=similarity_settings,
        split=EXPLAIN["split"],
        device=device(),
        code=script_code("explain_similarity.py"),
    script:
        "../scripts/explain_similarity.py"


# One job per layer: the activations and the label / concept-model matrices are read once and shared
# by the methods (per-job start-up costs more than most methods on the default study). Sharded methods
# (explain.shards, a method's shards:) are left to explain_shard / explain_gather below; when every
# generated method is sharded or LINE, there is no explain job.
if EXPLAIN_RULE_METHODS:

    rule explain:
        input:
            unpack(explain_inputs),
        output:
            [
                f"{RESULTS}/explanations/{{model}}/{{layer}}/{m}.parquet"
                for m in EXPLAIN_RULE_METHODS
            ],
        log:
            f"logs/{STUDY}/explain/{{model}}/{{layer}}.log",
        benchmark:
            f"benchmarks/{STUDY}/explain/{{model}}/{{layer}}.tsv"
        conda:
            "../../envs/neuronaudit.yaml"
        threads: STAGE_THREADS
        resources:
            mem_mb=mem_mb(),
        params:
            explain=explain_params,
            split=EXPLAIN["split"],
            device=device(),
            code=script_code("explain.py"),
        script:
            "../scripts/explain.py"


# Sharded methods (docs/explain_stage.md "Sharding"): shard i-of-n explains every n-th tile of 256 neurons of the
# layer (scattergather `explain`: explain.shards jobs, --set-scatter explain=N; a method's own shards:
# wins), explain_gather writes the same file an unsharded run does. Resumable: each shard is a file,
# so a rerun after a kill or a lost shard runs only the missing shards and the gather.
rule explain_shard:
    input:
        unpack(explain_shard_inputs),
    output:
        f"{RESULTS}/explain_shards/{{model}}/{{layer}}/{{method}}/shard_{{scatteritem}}.parquet",
    log:
        f"logs/{STUDY}/explain_shard/{{model}}/{{layer}}/{{method}}/{{scatteritem}}.log",
    benchmark:
        f"benchmarks/{STUDY}/explain_shard/{{model}}/{{layer}}/{{method}}/{{scatteritem}}.tsv"
    wildcard_constraints:
        method="|".join(SHARDED_METHODS) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        mem_mb=mem_mb(),
    params:
        explain=explain_shard_params,
        split=EXPLAIN["split"],
        device=device(),
        code=script_code("explain.py"),
    script:
        "../scripts/explain.py"


rule explain_gather:
    input:
        explain_shard_files,
    output:
        f"{RESULTS}/explanations/{{model}}/{{layer}}/{{method}}.parquet",
    log:
        f"logs/{STUDY}/explain_gather/{{model}}/{{layer}}/{{method}}.log",
    benchmark:
        f"benchmarks/{STUDY}/explain_gather/{{model}}/{{layer}}/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(SHARDED_METHODS) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("explain_gather.py"),
    script:
        "../scripts/explain_gather.py"


rule import_explanations:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        activations=f"{RESULTS}/activations/{{model}}/{{layer}}.parquet",
        imported=lambda wc: import_file(wc.method, wc.model, wc.layer),
    output:
        f"{RESULTS}/explanations/{{model}}/{{layer}}/{{method}}.parquet",
    log:
        f"logs/{STUDY}/import_explanations/{{model}}/{{layer}}/{{method}}.log",
    benchmark:
        f"benchmarks/{STUDY}/import_explanations/{{model}}/{{layer}}/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(IMPORTED) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        entry=lambda wc: explain_method_spec(wc.method),
        module=lambda wc: model_spec(wc.model)["layers"][wc.layer],
        split=EXPLAIN["split"],
        code=script_code("import_explanations.py"),
    script:
        "../scripts/import_explanations.py"


# Presence of every concept the explanations name, on the scoring split: one job per concept model, so
# each model (and its text encoder) is loaded once for all layers and methods.
rule scoring_presence:
    input:
        explanations=explanation_files(),
        manifest=f"{RESULTS}/manifest.parquet",
        embeddings=f"{RESULTS}/embeddings/{{concept_model}}.parquet",
        state=f"{RESULTS}/concept_models/{{concept_model}}.npz",
    output:
        f"{RESULTS}/scores/presence/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/scoring_presence/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/scoring_presence/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    threads: STAGE_THREADS
    resources:
        gpu=gpus(),
        mem_mb=mem_mb(),
    params:
        spec=lambda wc: concept_model_spec(wc.concept_model),
        split=SCORING["split"],
        device=device(),
        code=script_code("scoring_presence.py"),
    script:
        "../scripts/scoring_presence.py"


rule score_explanations:
    input:
        unpack(score_inputs),
    output:
        [f"{RESULTS}/scores/{{model}}/{{layer}}/{m}.parquet" for m in GENERATED],
    log:
        f"logs/{STUDY}/score_explanations/{{model}}/{{layer}}.log",
    benchmark:
        f"benchmarks/{STUDY}/score_explanations/{{model}}/{{layer}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        methods=GENERATED,
        labels=SCORING["labels"],
        split=SCORING["split"],
        code=script_code("score_explanations.py"),
    script:
        "../scripts/score_explanations.py"


rule score_imported:
    input:
        unpack(score_inputs),
    output:
        f"{RESULTS}/scores/{{model}}/{{layer}}/{{method}}.parquet",
    log:
        f"logs/{STUDY}/score_imported/{{model}}/{{layer}}/{{method}}.log",
    benchmark:
        f"benchmarks/{STUDY}/score_imported/{{model}}/{{layer}}/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(IMPORTED) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        methods=lambda wc: [wc.method],
        labels=SCORING["labels"],
        split=SCORING["split"],
        code=script_code("score_explanations.py"),
    script:
        "../scripts/score_explanations.py"


rule table_automated:
    input:
        score_files(),
    output:
        simple=f"{RESULTS}/tables/table1_automated.csv",
        complex=f"{RESULTS}/tables/table2_complex.csv",
    log:
        f"logs/{STUDY}/table_automated.log",
    benchmark:
        f"benchmarks/{STUDY}/table_automated.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("table_automated.py"),
    script:
        "../scripts/table_automated.py"


rule table_runtime:
    input:
        explanation_files(),
    output:
        f"{RESULTS}/tables/runtime.csv",
    log:
        f"logs/{STUDY}/table_runtime.log",
    benchmark:
        f"benchmarks/{STUDY}/table_runtime.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("table_runtime.py"),
    script:
        "../scripts/table_runtime.py"


rule downstream:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        explanations=downstream_explanations(),
        activations=list(downstream_activations().values()),
    output:
        summary=f"{RESULTS}/tables/table5_downstream.csv",
        classes=f"{RESULTS}/tables/table5_downstream_classes.csv",
    log:
        f"logs/{STUDY}/downstream.log",
    benchmark:
        f"benchmarks/{STUDY}/downstream.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        activations=downstream_activations(),
        split=DOWNSTREAM["split"],
        text_model=DOWNSTREAM["text_model"],
        code=script_code("downstream.py"),
    script:
        "../scripts/downstream.py"
