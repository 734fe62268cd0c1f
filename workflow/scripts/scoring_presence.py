import logging
import os

from neuronaudit.device import resolve_device, set_threads
from neuronaudit.logs import setup_job_log, timed
from neuronaudit.studies.scoring_presence import scoring_presence

log = setup_job_log(snakemake.log[0])
set_threads(snakemake.threads)
inp = snakemake.input
with timed(log, f"presence of the explanations' concepts ({snakemake.wildcards.concept_model})"):
    scoring_presence(
        snakemake.params.spec,
        inp.state,
        inp.embeddings,
        inp.manifest,
        list(inp.explanations),
        snakemake.output[0],
        split=snakemake.params.split,
        device=resolve_device(snakemake.params.device),
        meta={"concept_model_name": snakemake.wildcards.concept_model, "code": snakemake.params.code},
    )

# Leave without the interpreter's teardown: twice in CI this job's process died with SIGABRT
# ("terminate called without an active exception", a native thread pool torn down at exit) after its
# output was complete. The output is written and renamed into place above and the log is flushed here,
# so nothing is lost by skipping the teardown.
logging.shutdown()
os._exit(0)
