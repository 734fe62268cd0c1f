# Helpers of crowd.smk (rules there); helpers live in common*.smk, rules in the stage files.
# The crowd stage (issue 9; docs/crowd.md): MG-IS task design for chosen explanations, the MTurk export,
# simulated workers answering in MTurk's results format, the import of every answer file, and the BRAgg
# estimates and tables. All files of a study live in results/{study}/crowd/.
# Snakemake reserves the name "items" (input/output/params are lists with an .items() method), so
# CROWD/items.parquet is named item_table in every rule (snakemake.input.item_table).

CROWD = config["crowd"]
CROWD_DIR = f"{RESULTS}/crowd"
CROWD_SIMPLE_KINDS = ("clip_dissect", "le_l1", "top_class")


def crowd_layers():
    """["model/layer"] of crowd.evaluate, each checked against the configured models (none when
    crowd.enabled is false, so that a study without the default pair still parses)."""
    if not CROWD["enabled"]:
        return []
    out = []
    for pair in CROWD["evaluate"]:
        model, layer = pair["model"], pair["layer"]
        if model not in config["models"]:
            raise WorkflowError(
                f"crowd.evaluate: model {model!r} is not configured ({sorted(config['models'])}); "
                "fix crowd.evaluate or set crowd.enabled: false"
            )
        if layer not in model_spec(model)["layers"]:
            raise WorkflowError(
                f"crowd.evaluate: model {model!r} has no layer {layer!r} "
                f"({sorted(model_spec(model)['layers'])})"
            )
        out.append(f"{model}/{layer}")
    return list(dict.fromkeys(out))


def crowd_methods():
    """crowd.methods, or the configured simple methods of Table 1 (single-concept explanations)."""
    methods = CROWD["methods"]
    if methods is None:
        return [
            m
            for m, e in EXPLAIN["methods"].items()
            if e["method"] in CROWD_SIMPLE_KINDS
            or (e["method"] == "invert" and (e.get("params") or {}).get("length") == 1)
        ]
    for m in methods:
        if m not in EXPLAIN["methods"]:
            raise WorkflowError(
                f"crowd.methods: {m!r} is not an explain method ({sorted(EXPLAIN['methods'])})"
            )
    return list(methods)


def crowd_files(stage):
    """{"model/layer/method": path} of the evaluated explanations (stage: explanations or scores)."""
    out = {}
    for key in crowd_layers():
        model, layer = key.split("/")
        for method in crowd_methods():
            if method in explain_methods(model, layer):
                out[f"{key}/{method}"] = f"{RESULTS}/{stage}/{key}/{method}.parquet"
    return out


def crowd_guide_file():
    if CROWD["enabled"] and CROWD["guide"] not in config["concept_models"]:
        raise WorkflowError(
            f"crowd.guide: {CROWD['guide']!r} is not a configured concept model "
            f"({sorted(config['concept_models'])})"
        )
    if CROWD["enabled"] and CROWD["split"] != SCORING["split"]:
        raise WorkflowError(
            f"crowd.split = {CROWD['split']!r}: the guide's presence is computed on the scoring split "
            f"{SCORING['split']!r}; set crowd.split to explain.scoring.split"
        )
    return f"{RESULTS}/scores/presence/{CROWD['guide']}.parquet"


def crowd_design_settings():
    keys = ("evaluate", "neurons", "methods", "split", "guide", "gamma", "n")
    keys += ("images_per_task", "gold_per_task", "seed")
    return canon({k: CROWD[k] for k in keys})


def crowd_script_code(script):
    """script_code, or a marker while the script does not exist yet (the DAG still parses)."""
    path = Path(workflow.basedir) / "workflow" / "scripts" / script
    return script_code(script) if path.is_file() else f"missing:{script}"


def crowd_has_script(script):
    return (Path(workflow.basedir) / "workflow" / "scripts" / script).is_file()


def crowd_answer_files(wildcards=None):
    from neuronaudit.crowd.answers import answer_files

    return answer_files(CROWD_DIR, CROWD["simulate"]["enabled"], CROWD["answers"])


def crowd_aggregate_inputs(wildcards):
    inputs = {
        "explanations": f"{CROWD_DIR}/explanations.parquet",
        "design": f"{CROWD_DIR}/design.parquet",
        "item_table": f"{CROWD_DIR}/items.parquet",
        "ratings": f"{CROWD_DIR}/ratings.parquet",
    }
    if CROWD["simulate"]["enabled"]:
        inputs["truth"] = f"{CROWD_DIR}/truth.parquet"
    return inputs


CROWD_TABLES = {
    "table3": f"{RESULTS}/tables/crowd_table3.csv",
    "table3_md": f"{RESULTS}/tables/crowd_table3.md",
    "ttest": f"{RESULTS}/tables/crowd_ttest.csv",
    "agreement": f"{RESULTS}/tables/crowd_agreement.csv",
    "raters": f"{RESULTS}/tables/crowd_raters.csv",
    "figure_png": f"{RESULTS}/figures/crowd_estimates.png",
    "figure_pdf": f"{RESULTS}/figures/crowd_estimates.pdf",
}

# captions of the outputs shown in `snakemake --report` (workflow/report/*.rst)
CROWD_CAPTIONS = {
    "table3": "crowd_table3.rst",
    "ttest": "crowd_ttest.rst",
    "agreement": "crowd_agreement.rst",
    "figure_png": "crowd_estimates.rst",
}


def crowd_targets():
    """The crowd stage's outputs for rule all (none when crowd.enabled is false)."""
    if not CROWD["enabled"]:
        return []
    crowd_layers()
    crowd_methods()
    targets = [
        f"{CROWD_DIR}/{name}"
        for name in (
            "explanations.parquet",
            "design.parquet",
            "items.parquet",
            "tasks.parquet",
            "mturk/batch_input.csv",
            "mturk/task.html",
            "cost.json",
            "ratings.parquet",
        )
    ]
    if CROWD["simulate"]["enabled"]:
        targets.append(f"{CROWD_DIR}/truth.parquet")
    if crowd_has_script("crowd_aggregate.py"):
        targets.append(f"{CROWD_DIR}/estimates.parquet")
    if crowd_has_script("crowd_tables.py"):
        targets += list(CROWD_TABLES.values())
    return targets
