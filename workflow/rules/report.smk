# The paper's tables and figures (SPEC sec. 5; docs/report.md), one job each, drawn from the long
# tables the stages write. A figure's rule gets only its own `report.figures.<name>` block as params,
# so changing one plotting setting redraws that one figure. Every output is marked with report() and
# a caption from workflow/report/<name>.rst: `snakemake --report report.html` (make report).

import sys

from neuronaudit.report.comparison import study_descriptor
from neuronaudit.report.needs import needs_message

# Before any job (even on a dry run): the paths a user must provide and the weights a run downloads,
# printed when a configured path is missing here (config/paper.yaml; issue 11 item 6).
_NEEDS = needs_message(config)
if _NEEDS:
    print(_NEEDS, file=sys.stderr)

# figure -> (long tables it reads, report category)
REPORT_FIGURES = {
    "fig06_cost_vs_error": (["setting2_cost"], "Setting 2 (simulated raters)"),
    "fig07_gamma": (["gamma_sweep"], "Setting 1 (no label noise)"),
    "fig08_beta": (["setting2_beta"], "Setting 2 (simulated raters)"),
    "fig09_rce_vs_n": (["setting1_rce"], "Setting 1 (no label noise)"),
    "fig10_error_models": (["setting2_error_model"], "Setting 2 (simulated raters)"),
    "fig11_model_hybrid_human": (["setting2_prior"], "Setting 2 (simulated raters)"),
    "fig12_guiding_model": (["setting1_rce"], "Setting 1 (no label noise)"),
    "fig13_prior": (["setting2_prior"], "Setting 2 (simulated raters)"),
    "table4_auc_bins": (["table4_auc_bins"], "Setting 1 (no label noise)"),
    "table1_automated": (["table1_automated"], "Automated evaluation"),
    "table2_complex": (["table2_complex"], "Automated evaluation"),
}

# paper table -> (long table it reads, report category)
REPORT_TABLES = {
    "table1": ("table1_automated", "Automated evaluation"),
    "table2": ("table2_complex", "Automated evaluation"),
    "table4": ("table4_auc_bins", "Setting 1 (no label noise)"),
    "table5": ("table5_downstream", "Downstream"),
    "table8": ("runtime", "Runtime"),
    "table9": ("runtime", "Runtime"),
}


def report_tables():
    """The paper tables this study makes: Table 5 only with a downstream model configured."""
    return [t for t in REPORT_TABLES if t != "table5" or DOWNSTREAM["models"]]


def figure_settings(name):
    """The figure's own plotting block with unset (null) keys dropped, plus the PNG resolution."""
    block = config["report"]["figures"].get(name) or {}
    settings = {k: v for k, v in block.items() if v is not None}
    settings.setdefault("dpi", config["report"]["dpi"])
    return canon(settings)


def table_settings(table):
    """The report keys one paper table uses (so changing another's leaves it alone)."""
    keys = {"table8": ["runtime_digits"], "table9": ["runtime_digits"]}.get(
        table, ["digits"]
    )
    if table in ("table1", "table2"):
        keys.append("table_scorers")
    return canon({k: config["report"][k] for k in keys})


def report_targets():
    """Every output of this stage (called by all_targets() in rule all)."""
    out = [
        f"{RESULTS}/figures/{name}.{ext}"
        for name in REPORT_FIGURES
        for ext in ("png", "pdf")
    ]
    out += [
        f"{RESULTS}/tables/paper/{t}.{ext}"
        for t in report_tables()
        for ext in ("csv", "md")
    ]
    out += [f"{RESULTS}/tables/paper_comparison.{ext}" for ext in ("csv", "md")]
    out += fidelity_targets()
    return out


# the long tables paper_values.yaml reads ours from (neuronaudit.report.comparison)
COMPARISON_TABLES = [
    "table1_automated",
    "table2_complex",
    "table4_auc_bins",
    "setting1_rce",
    "gamma_sweep",
    "alpha_sweep",
    "setting2_beta",
    "setting2_cost",
    "setting2_error_model",
    "crowd_agreement",
    "crowd_table3",
    "cosy",
    "line_polysemanticity",
]


def comparison_inputs(wildcards):
    """The tables and JSON files of this study the comparison reads: only those the study makes."""
    made = set(explain_targets() + study_targets() + line_targets() + crowd_targets())
    inputs = {
        t: f"{RESULTS}/tables/{t}.csv"
        for t in COMPARISON_TABLES
        if f"{RESULTS}/tables/{t}.csv" in made
    }
    # the papers' numbers: editing the data file reruns the comparison
    inputs["paper_values"] = str(LIB / "report" / "paper_values.yaml")
    if CROWD["enabled"]:
        inputs["json_crowd_cost"] = f"{CROWD_DIR}/cost.json"
    for cm in config["concept_models"]:
        inputs[f"json_concept_model__{cm}"] = f"{RESULTS}/concept_models/{cm}.json"
    return inputs


def comparison_study():
    """What the comparison needs to know about the study (its dataset, models, concept models)."""
    return canon(study_descriptor(config))


for _name, (_tables, _category) in REPORT_FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            **{t: f"{RESULTS}/tables/{t}.csv" for t in _tables},
        output:
            png=report(
                f"{RESULTS}/figures/{_name}.png",
                caption=f"../report/{_name}.rst",
                category=_category,
                subcategory="Figures",
            ),
            pdf=f"{RESULTS}/figures/{_name}.pdf",
        log:
            f"logs/{STUDY}/figures/{_name}.log",
        benchmark:
            f"benchmarks/{STUDY}/figures/{_name}.tsv"
        conda:
            "../../envs/neuronaudit.yaml"
        params:
            figure=_name,
            settings=figure_settings(_name),
            code=script_code("report_figure.py"),
        script:
            "../scripts/report_figure.py"


for _table, (_long, _category) in REPORT_TABLES.items():

    rule:
        name:
            f"paper_{_table}"
        input:
            long=f"{RESULTS}/tables/{_long}.csv",
        output:
            csv=report(
                f"{RESULTS}/tables/paper/{_table}.csv",
                caption=f"../report/{_table}.rst",
                category=_category,
                subcategory="Tables",
            ),
            md=f"{RESULTS}/tables/paper/{_table}.md",
        log:
            f"logs/{STUDY}/paper_tables/{_table}.log",
        conda:
            "../../envs/neuronaudit.yaml"
        params:
            table=_table,
            settings=table_settings(_table),
            code=script_code("report_table.py"),
        script:
            "../scripts/report_table.py"


rule:
    name:
        "paper_comparison"
    input:
        unpack(comparison_inputs),
    output:
        csv=report(
            f"{RESULTS}/tables/paper_comparison.csv",
            caption="../report/paper_comparison.rst",
            category="Comparison with the paper",
        ),
        md=f"{RESULTS}/tables/paper_comparison.md",
    log:
        f"logs/{STUDY}/paper_comparison.log",
    conda:
        "../../envs/neuronaudit.yaml"
    params:
        study=comparison_study(),
        code=script_code("paper_comparison.py"),
    script:
        "../scripts/paper_comparison.py"
