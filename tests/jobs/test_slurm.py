"""The pipeline on a real single-node SLURM: submission, arrays writing one store, failures, resubmission,
and analyses on a dask-jobqueue SLURMCluster. The end-to-end runs are compared with a local run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sae_store.errors import SaeStoreError
from sae_store.jobs import SlurmError, read_manifest, run_pipeline, run_status, submit
from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.steps import step_names
from tests.jobs.conftest import (
    LocalSlurm,
    assert_same_results,
    assert_same_store,
    copy_inputs,
    fast_config,
    wait_for,
)

pytestmark = pytest.mark.slurm

HOSTILE = "a'; rm -rf ~; echo '"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sae_store_cli", *args], capture_output=True, text=True, env=env
    )


def _scontrol(slurm: LocalSlurm, job_id: int | None) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, env=slurm.env
    )
    return out.stdout


def test_hostile_values_reach_slurm_verbatim_and_never_run(
    slurm: LocalSlurm, make_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    root = tmp_path / "a'; touch canary; echo '"  # every path in the script holds shell syntax
    others = [n for n in step_names() if n != "demo-data"]
    slurm_section = {"job_name_prefix": HOSTILE, "mail_user": HOSTILE, "mail_types": ["END"]}
    cfg = make_config(root, skip=others, slurm=slurm_section)
    manifest = submit(cfg)
    (step,) = [s for s in manifest.steps if s.job_id is not None]
    info = _scontrol(slurm, step.job_id)
    assert f"JobName={HOSTILE}-demo-data\n" in info
    assert f"MailUser={HOSTILE} " in info
    wait_for(manifest)
    assert run_status(cfg).finished
    assert (root / "data" / "captions.csv").is_file()
    assert not list(tmp_path.rglob("canary")) and not (Path.cwd() / "canary").exists()


@pytest.mark.slow
def test_submitted_pipeline_equals_local_run(slurm: LocalSlurm, reference_run: Path, tmp_path: Path) -> None:
    cfg = fast_config(tmp_path / "run")
    copy_inputs(reference_run, cfg.paths.run_dir)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(cfg.to_yaml())

    out = _cli("jobs", "submit", "--config", str(config_file), env=slurm.env)
    assert out.returncode == 0, out.stderr
    manifest = read_manifest(cfg)
    assert manifest is not None
    steps = {s.name: s for s in manifest.steps}
    assert [steps[n].state for n in ("demo-data", "tiny-model", "prepare")] == ["complete"] * 3
    init, extract, train, encode = (steps[n] for n in ("init", "extract", "train", "encode"))
    assert extract.array and extract.tasks == [0, 1, 2] and extract.depends_on == [init.job_id]
    assert train.tasks == [0, 2] and train.depends_on == [init.job_id, extract.job_id]
    assert "#SBATCH --array=0,2\n" in Path(train.script).read_text()
    assert encode.tasks == [0, 1, 2] and extract.job_id in encode.depends_on
    script = Path(extract.script).read_text()
    assert "#SBATCH --array=0-2\n" in script and "#SBATCH --kill-on-invalid-dep=yes\n" in script
    assert f"Dependency=afterok:{init.job_id}" in _scontrol(slurm, extract.job_id)

    # a second submission while this one is queued is refused (manifest + squeue)
    with pytest.raises(SaeStoreError, match=r"already has jobs in SLURM: .*extract \(job \d+\).*jobs cancel"):
        submit(cfg)

    wait_for(manifest)
    status = run_status(cfg)
    assert status.finished, status.render()
    exits = sorted(p.name for p in (cfg.paths.run_dir / "pipeline_status").glob("extract_*.exit"))
    assert exits == [f"extract_{extract.job_id}_{t}.exit" for t in range(3)]
    for t in range(3):  # three processes wrote one store, two shard blocks x two languages each
        log = (cfg.paths.run_dir / "logs" / f"extract_{extract.job_id}_{t}.out").read_text()
        assert "wrote 4 of 4 blocks" in log
    assert_same_store(reference_run / "store.zarr", cfg.paths.path("store"))
    assert_same_results(reference_run, cfg.paths.run_dir)

    again = submit(cfg)  # everything is complete: nothing to submit
    assert all(s.state == "complete" and s.job_id is None for s in again.steps)


@pytest.mark.slow
def test_failed_array_task_cancels_dependants_and_resubmission_finishes(
    slurm: LocalSlurm, reference_run: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "fail-task-1"
    flag.touch()
    fail = (
        f'if [ "$SLURM_JOB_NAME" = sae-extract ] && [ "${{SLURM_ARRAY_TASK_ID:-}}" = 1 ] && [ -e {flag} ]; '
        'then echo "injected failure of task 1" >&2; exit 3; fi'
    )
    later = ["caption", "encode", "export-saes", "evaluate", "analyze", "intervene-ablate",
             "intervene-amplify", "intervene-neutralise", "intervene-summary", "explain", "explain-model",
             "report"]  # fmt: skip
    cfg = fast_config(tmp_path / "run", skip=later, slurm={"setup": [fail]})
    copy_inputs(reference_run, cfg.paths.run_dir)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(cfg.to_yaml())

    first = submit(cfg, config_file=config_file)
    wait_for(first)
    states = {(t.step, t.task): t.state for t in run_status(cfg).tasks}
    assert states[("extract", 0)] == states[("extract", 2)] == "COMPLETED"
    assert states[("extract", 1)] == "FAILED"
    assert states[("train", 0)] == states[("train", 2)] == "CANCELLED"
    out = _cli("jobs", "status", "--config", str(config_file), env=slurm.env)
    assert out.returncode == 1
    assert "extract task 1" in out.stdout and "failed with exit code 3" in out.stdout
    assert "injected failure of task 1" in out.stdout  # the end of the task's log
    assert "never ran: extract failed (--kill-on-invalid-dep)" in out.stdout
    assert f"sae-store jobs submit --config {config_file}" in out.stdout

    flag.unlink()
    second = submit(cfg, config_file=config_file)
    steps = {s.name: s for s in second.steps}
    assert steps["init"].state == "complete"
    assert steps["extract"].tasks == [1] and steps["extract"].n_tasks == 3  # only the failed task
    assert steps["train"].tasks == [0, 2] and steps["train"].depends_on == [steps["extract"].job_id]
    wait_for(second)
    assert run_status(cfg).finished
    assert_same_store(
        reference_run / "store.zarr", cfg.paths.path("store"), ignore_groups=("features", "analysis")
    )


@pytest.mark.slow
def test_analysis_on_a_slurm_cluster_equals_local(
    slurm: LocalSlurm, reference_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "run"
    shutil.copytree(reference_run, root)
    shutil.rmtree(root / "results")
    others = [n for n in step_names() if n != "analyze"]
    cfg = fast_config(root, skip=others, analysis={"cluster": "slurm", "workers": 1, "worker_memory": "1GiB"},
                      slurm={"scheduler_host": "127.0.0.1"})  # fmt: skip
    lines: list[str] = []
    run_pipeline(cfg, echo=lines.append)
    assert any("--cluster slurm --workers 1" in line and "--slurm-queue debug" in line for line in lines)
    out, err = capfd.readouterr()
    assert "dask_worker tcp://127.0.0.1:" in out + err  # the worker job's script, logged by analyze
    assert " Name=dask-worker " in (slurm.root / "log" / "jobcomp.txt").read_text()
    assert_same_results(reference_run, root)


def test_cancel_stops_a_run_and_status_says_so(
    slurm: LocalSlurm, make_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = make_config(tmp_path / "run")
    config_file = tmp_path / "run.yaml"
    config_file.write_text(cfg.to_yaml())
    manifest = submit(cfg)
    out = _cli("jobs", "cancel", "--config", str(config_file), env=slurm.env)
    assert out.returncode == 0 and out.stdout.startswith("cancelled jobs ")
    assert set(map(int, out.stdout.removeprefix("cancelled jobs ").split(", "))) <= set(manifest.job_ids)
    wait_for(manifest, timeout=30)
    status = run_status(cfg)
    assert status.failed and not status.finished
    assert {t.state for t in status.tasks if t.step == "report"} == {"CANCELLED"}
    assert "by `sae-store jobs cancel` at" in status.render()
    assert _cli("jobs", "cancel", "--config", str(config_file), env=slurm.env).stdout.startswith("no queued")


def test_a_refused_step_cancels_the_jobs_submitted_before_it(
    slurm: LocalSlurm, make_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    cfg = make_config(tmp_path / "run", slurm={"steps": {"extract": {"partition": "nosuch"}}})
    message = (
        r"submitting step 'extract' failed: .*sbatch.* failed \(exit 1\): .*[Ii]nvalid partition.*; "
        r"cancelled the jobs already submitted \(\d+, \d+, \d+, \d+\)"
    )
    with pytest.raises(SlurmError, match=message):
        submit(cfg)
    assert read_manifest(cfg) is None
    slurm.wait_idle(timeout=15)  # the four jobs before it are gone, nothing runs half a pipeline
