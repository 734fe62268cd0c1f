# The method studies of SPEC sec. 5 on the probing split D, where ground truth is known everywhere
# (docs/studies.md): Setting 1 (samplers, gamma and alpha sweeps, Table 4 by the guide's AUC) and
# Setting 2 (simulated noisy raters aggregated by majority / BRAgg on MG-IS samples).
# One job per (model, layer, concept model); gathered per study; summarised into tables/*.csv.


rule study_pairs:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        labels=f"{RESULTS}/labels.parquet",
        activations=[
            f"{RESULTS}/activations/{m}/{l}.parquet" for m, l in study_layers()
        ],
        presence=[
            study_presence_file(cm)
            for cm in dict.fromkeys(study_guides() + setting2_priors())
        ],
    output:
        f"{RESULTS}/study_pairs/pairs.parquet",
    log:
        f"logs/{STUDY}/study_pairs.log",
    benchmark:
        f"benchmarks/{STUDY}/study_pairs.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        layers=study_layers(),
        guides=list(dict.fromkeys(study_guides() + setting2_priors())),
        sampling=pair_settings(),
        setting2_pairs=config["setting2"]["pairs_per_layer"],
        code=script_code("study_pairs.py"),
    script:
        "../scripts/study_pairs.py"


rule setting1:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/setting1/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting1/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting1/{{model}}/{{layer}}/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        study="main",
        settings=setting1_settings("main"),
        code=script_code("setting1.py"),
    script:
        "../scripts/setting1.py"


rule setting1_sweep:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/setting1/sweeps/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting1_sweep/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting1_sweep/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        study=lambda wc: wc.sweep,
        settings=lambda wc: setting1_settings(wc.sweep),
        code=script_code("setting1.py"),
    script:
        "../scripts/setting1.py"


rule gather_setting1:
    input:
        setting1_files(),
    output:
        f"{RESULTS}/setting1/rce.parquet",
    log:
        f"logs/{STUDY}/gather_setting1.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("gather.py"),
    script:
        "../scripts/gather.py"


rule gather_sweep:
    input:
        lambda wc: setting1_files(sweep_guides(), sweep=wc.sweep),
    output:
        f"{RESULTS}/setting1/{{sweep}}_sweep.parquet",
    log:
        f"logs/{STUDY}/gather_sweep/{{sweep}}.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("gather.py"),
    script:
        "../scripts/gather.py"


rule setting2:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/setting2/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting2/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting2/{{model}}/{{layer}}/{{concept_model}}.tsv"
    conda:
        "../../envs/neuronaudit.yaml"
    resources:
        mem_mb=mem_mb(),
    params:
        settings=canon(
            {
                k: v
                for k, v in config["setting2"].items()
                if k not in ("guides", "pairs_per_layer")
            }
        ),
        probing={
            k: config["sampling"][k] for k in ("split", "vocabulary", "min_positives")
        },
        code=script_code("setting2.py"),
    script:
        "../scripts/setting2.py"


rule gather_setting2:
    input:
        setting2_files(),
    output:
        f"{RESULTS}/setting2/rce.parquet",
    log:
        f"logs/{STUDY}/gather_setting2.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        code=script_code("gather.py"),
    script:
        "../scripts/gather.py"


rule study_tables:
    input:
        rce=f"{RESULTS}/setting1/rce.parquet",
        gamma=f"{RESULTS}/setting1/gamma_sweep.parquet",
        alpha=f"{RESULTS}/setting1/alpha_sweep.parquet",
        setting2=f"{RESULTS}/setting2/rce.parquet",
    output:
        **{
            t: (
                report(
                    f"{RESULTS}/tables/{t}.csv",
                    caption="../report/setting1_coverage.rst",
                    category="Setting 1 (no label noise)",
                )
                if t == "setting1_coverage"
                else f"{RESULTS}/tables/{t}.csv"
            )
            for t in STUDY_TABLES
        },
    log:
        f"logs/{STUDY}/study_tables.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        floor=config["sampling"]["floor"],
        table_n=config["sampling"]["table_n"],
        beta=config["setting2"]["beta"],
        code=script_code("study_tables.py"),
    script:
        "../scripts/study_tables.py"
