"""Rendering sbatch scripts: #SBATCH lines, quoting of hostile values, the command line."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.plan import plan
from sae_store.jobs.render import TEMPLATE, TEMPLATE_DIR, render_script, sbatch_quote
from sae_store.jobs.steps import STEPS, TASK_ID
from sae_store.selection import format_ranges
from sae_store_cli.main import build_parser

HOSTILE = "a'; rm -rf ~; echo '"
SLURM = {
    "partition": "gpu", "account": "proj-1", "qos": "normal", "cpus": 4, "memory": "16G", "time": "02:00:00",
    "array_limit": 2, "mail_user": "me@example.org", "mail_types": ["END", "FAIL"],
    "setup": ["module load cuda/12.4", "source ~/venv/bin/activate"],
    "extra_directives": ["--constraint=a100"], "executable": "sae-store", "tasks": 3,
    "steps": {"extract": {"gres": "gpu:1", "time": "1-00:00:00", "extra_directives": ["--exclusive"]}},
}  # fmt: skip


def _script(cfg: PipelineConfig, step: str) -> str:
    (p,) = [p for p in plan(cfg, slurm=True) if p.step.name == step]
    return render_script(cfg, p)


def _directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_extract_script_has_every_directive(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config(slurm=SLURM)
    run = cfg.paths.run_dir
    assert _directives(_script(cfg, "extract")) == [
        "--job-name=sae-extract",
        "--partition=gpu",
        "--account=proj-1",
        "--qos=normal",
        "--cpus-per-task=4",
        "--mem=16G",
        "--time=1-00:00:00",
        "--gres=gpu:1",
        f"--chdir={run}",
        f"--output={run}/logs/extract_%A_%a.out",
        "--kill-on-invalid-dep=yes",
        "--mail-user=me@example.org",
        "--mail-type=END,FAIL",
        "--array=0-2%2",
        "--constraint=a100",
        "--exclusive",
    ]


def test_single_job_steps_have_no_array_and_a_job_id_log(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config(slurm={"partition": "debug"})
    lines = _directives(_script(cfg, "init"))
    assert not any(line.startswith("--array") for line in lines)
    assert f"--output={cfg.paths.run_dir}/logs/init_%j.out" in lines
    assert "--time=00:15:00" in lines and "--mem=1G" in lines  # the demo config's defaults


def test_layer_arrays_run_one_task_per_layer(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config(layers=[0, 2, 3], interventions={"layers": [3]})
    assert "--array=0,2-3" in _directives(_script(cfg, "train"))
    assert "--array=3" in _directives(_script(cfg, "intervene-ablate"))
    assert _script(cfg, "train").rstrip().endswith('--layer "$SLURM_ARRAY_TASK_ID"')


def test_setup_lines_and_command_close_the_script(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config(slurm=SLURM)
    script = _script(cfg, "extract")
    assert script.startswith("#!/bin/bash\n#SBATCH ")
    assert (
        "\nset -euo pipefail\n" in script
        and "\nmodule load cuda/12.4\nsource ~/venv/bin/activate\n" in script
    )
    assert "@{" not in script
    command = script.rstrip().splitlines()[-1]
    store, model = cfg.paths.path("store"), cfg.paths.path("model")
    assert shlex.split(command) == ["sae-store", "extract", str(store), "--model", str(model),
                                    "--task-index", "$SLURM_ARRAY_TASK_ID", "--task-count", "3"]  # fmt: skip
    assert '--task-index "$SLURM_ARRAY_TASK_ID"' in command  # expanded by bash, inside double quotes
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_hostile_values_are_quoted_for_sbatch_and_bash(
    make_config: Callable[..., PipelineConfig], tmp_path: Path
) -> None:
    root = tmp_path / HOSTILE
    cfg = make_config(root, slurm={"partition": "debug", "job_name_prefix": HOSTILE, "account": HOSTILE,
                                   "mail_user": HOSTILE, "mail_types": ["FAIL"]})  # fmt: skip
    script = _script(cfg, "extract")
    lines = _directives(script)
    quoted = '"' + HOSTILE + '"'  # sbatch reads double quotes; single quotes and ';' are plain text there
    assert f'--job-name={quoted[:-1]}-extract"' in lines
    assert f"--account={quoted}" in lines and f"--mail-user={quoted}" in lines
    assert f'--chdir="{root}"' in lines
    command = shlex.split(script.rstrip().splitlines()[-1])
    assert command[4] == str(root / "store.zarr") and command[6] == str(root / "model")
    status_line = next(line for line in script.splitlines() if line.startswith("status_file="))
    assert status_line.startswith("status_file=" + shlex.quote(str(root / "pipeline_status")) + "/extract_")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("gpu:1", "gpu:1"), ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'), ("c:\\x", '"c:\\\\x"'),
     ("x#y", '"x#y"'), ("", '""')],
)  # fmt: skip
def test_sbatch_quote(value: str, quoted: str) -> None:
    assert sbatch_quote(value) == quoted


@pytest.mark.parametrize(
    ("ids", "text"), [([0], "0"), ([0, 1, 2], "0-2"), ([3, 1, 2, 7, 9, 10], "1-3,7,9-10"), ([5, 5], "5")]
)
def test_compress_ids(ids: list[int], text: str) -> None:
    assert format_ranges(ids) == text


def test_default_executable_is_this_interpreter(make_config: Callable[..., PipelineConfig]) -> None:
    command = _script(make_config(), "init").rstrip().splitlines()[-1]
    assert shlex.split(command)[:4] == [sys.executable, "-m", "sae_store_cli", "init"]


def test_every_step_command_is_accepted_by_the_cli(make_config: Callable[..., PipelineConfig]) -> None:
    """The original pipeline passed flags its scripts did not accept; parse every step's argv here."""
    cfg = make_config(
        layers=[0, 1], languages=["en", "ar"], prompts={"fr": "Décris la personne."}, quota="10G",
        model={"device": "cpu", "dtype": "float32", "batch_size": 4},
        sae={"arch": "topk", "k": 4, "expansion": 2, "steps": 10, "batch_size": 64, "lr": 0.001,
             "roles": "image,text", "seed": 1, "device": "cpu"},
        analysis={"cluster": "slurm", "workers": 2, "worker_memory": "1GiB", "alpha": 0.1, "permutations": 5,
                  "bootstrap": 5, "min_per_group": 9, "seed": 1},
        interventions={"alpha": 3.0, "controls": 10, "max_samples": 8, "bootstrap": 10, "max_new_tokens": 8,
                       "seed": 2},
        slurm={"account": "proj"},
    )  # fmt: skip
    parser = build_parser()
    plans = plan(cfg, slurm=True)
    assert [p.step.name for p in plans] == [s.name for s in STEPS]
    for p in plans:
        argv = [str(p.tasks[0]) if a is TASK_ID else str(a) for a in p.step.argv(cfg, p.n_tasks)]
        args = parser.parse_args(argv)  # exits (SystemExit) on an unknown or malformed option
        assert args.func is not None, p.step.name


def test_template_is_in_the_top_level_jobs_folder() -> None:
    assert Path(__file__).resolve().parents[2] / "jobs" == TEMPLATE_DIR
    assert (TEMPLATE_DIR / TEMPLATE).is_file()


def test_example_cluster_config_renders_without_the_model_on_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_store_cli.main import main

    monkeypatch.setenv("USER", "ada")  # its paths.root is /scratch/$USER/...
    config = tmp_path / "cluster.yaml"
    assert main(["jobs", "example", "gemma3-4b", "--out", str(config)]) == 0
    assert main(["jobs", "example", "gemma3-4b", "--out", str(config)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main(["jobs", "render", "--config", str(config), "--out", str(tmp_path / "s")]) == 0
    assert "#SBATCH --array=0-33%4" in (tmp_path / "s" / "train.sbatch").read_text()
    assert "#SBATCH --array=6,12,18,24,30%4" in (tmp_path / "s" / "intervene-ablate.sbatch").read_text()


def test_render_without_slurm_section_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sae_store_cli.main import main

    config = tmp_path / "local.yaml"
    config.write_text(f"paths: {{root: {tmp_path / 'run'}}}\nlayers: 0-1\n")
    assert main(["jobs", "render", "--config", str(config), "--out", str(tmp_path / "scripts")]) == 2
    assert "the config has no `slurm` section; add one" in capsys.readouterr().err
    assert not (tmp_path / "scripts").exists()
