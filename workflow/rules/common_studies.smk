# Helpers and input functions of studies.smk; no rules.
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
        "pairs": f"{RESULTS}/study_pairs/pairs.parquet",
    }


def setting1_files(guides=None, sweep=None):
    sub = "" if sweep is None else f"sweeps/{sweep}/"
    guides = study_guides() if guides is None else guides
    return [
        f"{RESULTS}/setting1/{sub}{m}/{l}/{cm}.parquet"
        for m, l in study_layers()
        for cm in guides
    ]


def setting2_files():
    return [
        f"{RESULTS}/setting2/{m}/{l}/{cm}.parquet"
        for m, l in study_layers()
        for cm in setting2_priors()
    ]


STUDY_TABLES = [
    "table4_auc_bins",
    "setting1_rce",
    "setting1_coverage",
    "gamma_sweep",
    "alpha_sweep",
    "setting2_cost",
    "setting2_beta",
    "setting2_error_model",
    "setting2_prior",
]


def study_targets():
    return [f"{RESULTS}/tables/{t}.csv" for t in STUDY_TABLES]


def fidelity_targets():
    """Every output of the fidelity study (called from report_targets())."""
    if not config["fidelity"]["enabled"]:
        return []
    return [
        f"{RESULTS}/fidelity/synthetic.parquet",
        f"{RESULTS}/fidelity/observed_pairs.parquet",
        f"{RESULTS}/tables/fidelity_synthetic.csv",
        f"{RESULTS}/tables/fidelity_observed.csv",
        f"{RESULTS}/tables/fidelity_coverage.csv",
        f"{RESULTS}/figures/fidelity.png",
        f"{RESULTS}/figures/fidelity.pdf",
        f"{RESULTS}/fidelity/summary.json",
    ]
