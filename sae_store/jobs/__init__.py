"""Running the pipeline: one definition of its steps, run here or submitted to SLURM.

- :mod:`~sae_store.jobs.steps`: the steps (command, arguments from the config, array kind,
  dependencies, completion check), one entry each in :data:`~sae_store.jobs.steps.STEPS`.
- :mod:`~sae_store.jobs.plan`: which steps and array tasks a config's run has and which are pending.
- :mod:`~sae_store.jobs.render`: sbatch scripts from the top-level ``jobs/`` template (pure).
- :mod:`~sae_store.jobs.submit`: ``sbatch`` chain with ``afterok`` dependencies, manifest, cancel.
- :mod:`~sae_store.jobs.status`: per-task state of a submitted run, explained.
- :mod:`~sae_store.jobs.local`: the same steps run here in order.
"""

from sae_store.jobs.local import PipelineError, StepResult, outputs, run_pipeline
from sae_store.jobs.plan import StepPlan, plan
from sae_store.jobs.render import SCRIPT_DIR, render_script
from sae_store.jobs.slurm import SlurmError
from sae_store.jobs.status import RunStatus, TaskStatus, run_status
from sae_store.jobs.steps import STEPS, Step
from sae_store.jobs.submit import Manifest, SubmittedStep, cancel, read_manifest, submit

__all__ = [
    "SCRIPT_DIR",
    "STEPS",
    "Manifest",
    "PipelineError",
    "RunStatus",
    "SlurmError",
    "Step",
    "StepPlan",
    "StepResult",
    "SubmittedStep",
    "TaskStatus",
    "cancel",
    "outputs",
    "plan",
    "read_manifest",
    "render_script",
    "run_pipeline",
    "run_status",
    "submit",
]
