# LINE (docs/line.md): every explain.methods entry with method: line, per (model, layer), sharded over
# neurons with scattergather (line.shards jobs; --set-scatter line=N): shard i-of-n explains every n-th
# neuron (no split job is needed), line_gather collects the n shards. Resumable: each shard keeps one
# checkpoint file per finished neuron under results/{study}/line/, which a rerun reads back.


scattergather:
    line=LINE["shards"],


rule line_shard:
    input:
        unpack(line_shard_inputs),
    output:
        f"{RESULTS}/line/{{model}}/{{layer}}/{{method}}/shard_{{scatteritem}}.parquet",
    log:
        f"logs/{STUDY}/line_shard/{{model}}/{{layer}}/{{method}}/{{scatteritem}}.log",
    benchmark:
        f"benchmarks/{STUDY}/line_shard/{{model}}/{{layer}}/{{method}}/{{scatteritem}}.tsv"
    wildcard_constraints:
        method="|".join(LINE_METHODS) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    threads: 1
    resources:
        gpu=lambda wc: line_gpus(wc.method),
    params:
        line=canon(LINE),
        entry=lambda wc: line_entry(wc.method),
        concept_model=lambda wc: concept_model_spec(LINE["offline"]["concept_model"]),
        vocabulary=lambda wc: vocabulary_spec(LINE["offline"]["vocabulary"]),
        split=EXPLAIN["split"],
        scoring_split=SCORING["split"],
        model=lambda wc: model_spec(wc.model),
        module=lambda wc: model_spec(wc.model)["layers"][wc.layer],
        checkpoints=lambda wc: f"{RESULTS}/line/{wc.model}/{wc.layer}/{wc.method}/neurons",
        device=device(),
        code=script_code("line_shard.py"),
    script:
        "../scripts/line_shard.py"


rule line_gather:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        activations=f"{RESULTS}/activations/{{model}}/{{layer}}.parquet",
        shards=lambda wc: gather.line(
            f"{RESULTS}/line/{{model}}/{{layer}}/{{method}}/shard_{{scatteritem}}.parquet",
            model=wc.model,
            layer=wc.layer,
            method=wc.method,
        ),
    output:
        explanations=f"{RESULTS}/explanations/{{model}}/{{layer}}/{{method}}.parquet",
        history=f"{RESULTS}/explanations/{{model}}/{{layer}}/{{method}}_history.parquet",
    log:
        f"logs/{STUDY}/line_gather/{{model}}/{{layer}}/{{method}}.log",
    benchmark:
        f"benchmarks/{STUDY}/line_gather/{{model}}/{{layer}}/{{method}}.tsv"
    wildcard_constraints:
        method="|".join(LINE_METHODS) or "(?!)",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        line=canon(LINE),
        entry=lambda wc: line_entry(wc.method),
        split=EXPLAIN["split"],
        code=script_code("line_gather.py"),
    script:
        "../scripts/line_gather.py"


rule line_polysemanticity:
    input:
        histories=line_history_files(),
        labels=f"{RESULTS}/labels.parquet",
    output:
        report(
            f"{RESULTS}/tables/line_polysemanticity.csv",
            caption="../report/line_polysemanticity.rst",
            category="LINE",
        ),
    log:
        f"logs/{STUDY}/line_polysemanticity.log",
    benchmark:
        f"benchmarks/{STUDY}/line_polysemanticity.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        settings=canon(LINE["polysemanticity"]),
        reference=lambda wc: vocabulary_spec(
            LINE["polysemanticity"]["reference_vocabulary"]
        ),
        code=script_code("line_polysemanticity.py"),
    script:
        "../scripts/line_polysemanticity.py"


# CoSy-style evaluation of every method (docs/line.md): images of the explanation (retrieved from the
# scoring split by the explanation's predicted activation) against the rest of the split.
rule line_cosy:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        explanations=explanation_files(),
        activations=list(cosy_activations().values()),
        presence=f"{RESULTS}/scores/presence/{LINE['cosy']['concept_model']}.parquet",
    output:
        table=f"{RESULTS}/tables/cosy.csv",
        neurons=f"{RESULTS}/tables/cosy_neurons.parquet",
        figure=report(
            f"{RESULTS}/figures/cosy.png",
            caption="../report/cosy.rst",
            category="LINE",
        ),
    log:
        f"logs/{STUDY}/line_cosy.log",
    benchmark:
        f"benchmarks/{STUDY}/line_cosy.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        cosy=canon(LINE["cosy"]),
        activations=cosy_activations(),
        split=SCORING["split"],
        code=script_code("line_cosy.py"),
    script:
        "../scripts/line_cosy.py"
