# The method studies of SPEC sec. 5 on the probing split D, where ground truth is known everywhere
# (docs/studies.md): Setting 1 (samplers, gamma and alpha sweeps, Table 4 by the guide's AUC) and
# Setting 2 (simulated noisy raters aggregated by majority / BRAgg on MG-IS samples).
# One job per (model, layer, concept model); gathered per study; summarised into tables/*.csv.

STUDY_CODE = (
    "studies",
    "sampling.py",
    "scoring.py",
    "aggregation.py",
    "data/datasets.py",
)


wildcard_constraints:
    sweep=r"gamma|alpha",


def study_layers():
    """(model, layer) pairs studied: sampling.targets, or every configured layer of every model."""
    targets = config["sampling"]["targets"]
    if targets is None:
        return [
            (m, layer)
            for m, spec in config["models"].items()
            for layer in spec["layers"]
        ]
    for model, layer in targets:
        if layer not in model_spec(model)["layers"]:
            raise ValueError(
                f"sampling.targets: model {model!r} has no layer {layer!r}"
            )
    return [tuple(t) for t in targets]


def _concept_models(names):
    names = list(config["concept_models"]) if names is None else names
    for cm in names:
        concept_model_spec(cm)
    return names


def study_guides():
    return _concept_models(config["sampling"]["guides"])


def sweep_guides():
    return _concept_models(config["sampling"]["sweep_guides"])


def setting2_priors():
    return _concept_models(config["setting2"]["guides"])


def pair_settings():
    """The sampling keys that decide the pairs (so changing ns or seeds keeps pairs.parquet)."""
    keys = (
        "split",
        "vocabulary",
        "min_positives",
        "neurons_per_layer",
        "n_random_pairs",
        "floor",
        "seed",
    )
    return {k: config["sampling"][k] for k in keys}


def setting1_settings(study):
    """The sampling keys a Setting-1 job uses: changing the sweeps leaves the main grid alone."""
    keys = [
        "split",
        "vocabulary",
        "min_positives",
        "gamma",
        "alpha",
        "estimator",
        "rng",
    ]
    keys += {
        "main": ["samplers", "ns", "seeds"],
        "gamma": ["gammas", "ns", "seeds", "sweep_ns", "sweep_seeds"],
        "alpha": ["alphas", "ns", "seeds", "sweep_ns", "sweep_seeds"],
    }[study]
    return {k: config["sampling"][k] for k in keys}


def study_presence_file(concept_model):
    return (
        f"{RESULTS}/presence/{concept_model}/{config['sampling']['vocabulary']}.parquet"
    )


def study_layer_inputs(wildcards):
    return {
        "manifest": f"{RESULTS}/manifest.parquet",
        "labels": f"{RESULTS}/labels.parquet",
        "activations": f"{RESULTS}/activations/{wildcards.model}/{wildcards.layer}.parquet",
        "presence": study_presence_file(wildcards.concept_model),
        "pairs": f"{RESULTS}/sampling/pairs.parquet",
    }


def setting1_files(guides=None, sweep=None):
    sub = "" if sweep is None else f"sweeps/{sweep}/"
    guides = study_guides() if guides is None else guides
    return [
        f"{RESULTS}/sampling/{sub}{m}/{l}/{cm}.parquet"
        for m, l in study_layers()
        for cm in guides
    ]


def setting2_files():
    return [
        f"{RESULTS}/ratings_sim/{m}/{l}/{cm}.parquet"
        for m, l in study_layers()
        for cm in setting2_priors()
    ]


STUDY_TABLES = [
    "table4_auc_bins",
    "setting1_rce",
    "gamma_sweep",
    "alpha_sweep",
    "setting2_cost",
    "setting2_beta",
    "setting2_error_model",
    "setting2_prior",
]


def study_targets():
    return [f"{RESULTS}/tables/{t}.csv" for t in STUDY_TABLES]


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
        f"{RESULTS}/sampling/pairs.parquet",
    log:
        f"logs/{STUDY}/study_pairs.log",
    benchmark:
        f"benchmarks/{STUDY}/study_pairs.tsv"
    params:
        layers=study_layers(),
        guides=list(dict.fromkeys(study_guides() + setting2_priors())),
        sampling=pair_settings(),
        setting2_pairs=config["setting2"]["pairs_per_layer"],
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/study_pairs.py"


rule setting1:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/sampling/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting1/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting1/{{model}}/{{layer}}/{{concept_model}}.tsv"
    params:
        study="main",
        settings=setting1_settings("main"),
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/setting1.py"


rule setting1_sweep:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/sampling/sweeps/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting1_sweep/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting1_sweep/{{sweep}}/{{model}}/{{layer}}/{{concept_model}}.tsv"
    params:
        study=lambda wc: wc.sweep,
        settings=lambda wc: setting1_settings(wc.sweep),
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/setting1.py"


rule gather_setting1:
    input:
        setting1_files(),
    output:
        f"{RESULTS}/sampling/rce.parquet",
    log:
        f"logs/{STUDY}/gather_setting1.log",
    params:
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/study_gather.py"


rule gather_sweep:
    input:
        lambda wc: setting1_files(sweep_guides(), sweep=wc.sweep),
    output:
        f"{RESULTS}/sampling/{{sweep}}_sweep.parquet",
    log:
        f"logs/{STUDY}/gather_sweep/{{sweep}}.log",
    params:
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/study_gather.py"


rule setting2:
    input:
        unpack(study_layer_inputs),
    output:
        f"{RESULTS}/ratings_sim/{{model}}/{{layer}}/{{concept_model}}.parquet",
    log:
        f"logs/{STUDY}/setting2/{{model}}/{{layer}}/{{concept_model}}.log",
    benchmark:
        f"benchmarks/{STUDY}/setting2/{{model}}/{{layer}}/{{concept_model}}.tsv"
    params:
        settings=config["setting2"],
        probing={
            k: config["sampling"][k] for k in ("split", "vocabulary", "min_positives")
        },
        code=code_version(*STUDY_CODE, "raters.py"),
    script:
        "../scripts/setting2.py"


rule gather_setting2:
    input:
        setting2_files(),
    output:
        f"{RESULTS}/setting2/rce.parquet",
    log:
        f"logs/{STUDY}/gather_setting2.log",
    params:
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/study_gather.py"


rule study_tables:
    input:
        rce=f"{RESULTS}/sampling/rce.parquet",
        gamma=f"{RESULTS}/sampling/gamma_sweep.parquet",
        alpha=f"{RESULTS}/sampling/alpha_sweep.parquet",
        setting2=f"{RESULTS}/setting2/rce.parquet",
    output:
        **{t: f"{RESULTS}/tables/{t}.csv" for t in STUDY_TABLES},
    log:
        f"logs/{STUDY}/study_tables.log",
    params:
        floor=config["sampling"]["floor"],
        table_n=config["sampling"]["table_n"],
        beta=config["setting2"]["beta"],
        code=code_version(*STUDY_CODE),
    script:
        "../scripts/study_tables.py"
