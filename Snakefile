# neuronaudit: from images to the tables and figures of the paper.
# Run the offline default study:   snakemake --cores 2
# Another study:                   snakemake --cores 8 --configfile config/paper.yaml
from snakemake.utils import min_version

min_version("9.0")


# The default study unless --configfile names another study's file, which then replaces it rather
# than merging into it. `--config key=value` overrides either one.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/common_explain.smk"
include: "workflow/rules/common_studies.smk"
include: "workflow/rules/common_line.smk"
include: "workflow/rules/common_crowd.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/explain.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/line.smk"
include: "workflow/rules/crowd.smk"


rule all:
    default_target: True
    input:
        all_targets(),
