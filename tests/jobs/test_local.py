"""The local runner and the jobs/pipeline/demo commands (no SLURM needed)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import pytest

from sae_store.errors import SaeStoreError
from sae_store.jobs import PipelineError, SlurmError, run_pipeline, run_status, submit
from sae_store.jobs.config import PipelineConfig
from sae_store_cli import jobs_cmds
from sae_store_cli.main import main


class FakeRunner:
    """Records commands; fails the one whose sub-command is ``fail``."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.fail = fail

    def __call__(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        self.calls.append((list(argv), dict(env)))
        return 3 if argv[3] == self.fail else 0


def test_local_run_runs_every_step_in_order_with_one_extraction_task(
    make_config: Callable[..., PipelineConfig],
) -> None:
    runner, lines = FakeRunner(), []
    cfg = make_config(layers=[1, 3], slurm={"scheduler_host": "127.0.0.1"})
    run_pipeline(cfg, runner=runner, echo=lines.append)
    commands = [argv[3:] for argv, _ in runner.calls]
    assert all(argv[:3] == [sys.executable, "-m", "sae_store_cli"] for argv, _ in runner.calls)
    assert [c[0] for c in commands] == [
        "make-demo-data", "make-tiny-model", "prepare", "init", "extract", "caption", "train", "train",
        "encode", "export-saes", "evaluate", "evaluate", "analyze", "intervene", "intervene", "intervene",
        "intervene-summary", "explain", "explain", "report",
    ]  # fmt: skip
    extract = commands[4]
    assert extract[-4:] == ["--task-index", "0", "--task-count", "1"]
    assert [c[-1] for c in commands[6:8]] == ["1", "3"]  # one training run per layer
    assert [c[-1] for c in commands[10:12]] == ["1", "3"]  # one evaluation per layer, both SAE sets
    saes = [w for a, w in pairwise(commands[10]) if a == "--saes"]
    assert saes == [str(cfg.paths.path("saes")), f"pretrained-layout={cfg.paths.run_dir / 'saes-sparsify'}"]
    assert runner.calls[0][1] == {
        "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS__HOST": "127.0.0.1",
        "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(cfg.paths.run_dir / "logs" / "dask"),
    }
    assert lines[0] == "[1/18] demo-data: demo captions and images"
    assert lines[1].startswith("  $ sae-store make-demo-data ")
    assert lines[2].startswith("[1/18] demo-data: done in ")


def test_failed_step_stops_the_run_with_how_to_resume(make_config: Callable[..., PipelineConfig]) -> None:
    runner = FakeRunner(fail="init")
    with pytest.raises(PipelineError, match=r"step 'init' failed with exit status 3; fix the cause and run "
                       r"`sae-store pipeline --config C` again: complete steps are skipped"):  # fmt: skip
        run_pipeline(make_config(), runner=runner, echo=lambda line: None)
    assert [argv[3] for argv, _ in runner.calls][-1] == "init"


def test_complete_steps_are_skipped(make_config: Callable[..., PipelineConfig]) -> None:
    cfg = make_config()
    captions = cfg.paths.path("captions")
    captions.parent.mkdir(parents=True)
    captions.write_text("image,en_caption,ar_caption\n")
    runner, lines = FakeRunner(), []
    run_pipeline(cfg, runner=runner, echo=lines.append)
    assert lines[0] == "[1/18] demo-data: already complete, skipped"
    assert runner.calls[0][0][3] == "make-tiny-model"


def test_submit_without_sbatch_says_where_to_run(
    make_config: Callable[..., PipelineConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = (
        r"`sbatch` is not on PATH: SLURM commands must run on a cluster login node .* "
        r"`sae-store pipeline --config C` runs the same steps here"
    )
    with pytest.raises(SlurmError, match=message):
        submit(make_config())
    assert not (tmp_path / "run" / "pipeline_status").exists()


def test_cli_submit_without_sbatch_is_one_clear_line(
    make_config: Callable[..., PipelineConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text(make_config().to_yaml())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["jobs", "submit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sae-store jobs submit: error: `sbatch` is not on PATH") and err.count("\n") == 1


def test_status_before_any_submission(make_config: Callable[..., PipelineConfig]) -> None:
    message = (
        r"has no submission \(no .*manifest.json\); submit it with `sae-store jobs submit --config c.yaml`"
    )
    with pytest.raises(SaeStoreError, match=message):
        run_status(make_config(), config_file="c.yaml")


def test_cli_render_writes_one_script_per_step(
    make_config: Callable[..., PipelineConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(make_config().to_yaml())
    assert main(["jobs", "render", "--config", str(config), "--out", str(tmp_path / "scripts")]) == 0
    written = capsys.readouterr().out.split()
    assert [Path(p).name for p in written][:3] == ["demo-data.sbatch", "tiny-model.sbatch", "prepare.sbatch"]
    assert len(written) == 18 and all(Path(p).read_text().startswith("#!/bin/bash\n") for p in written)


def test_cli_demo_prints_each_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[PipelineConfig] = []

    def fake_run(cfg: PipelineConfig, *, rerun: str, echo: Callable[[str], None]) -> list[object]:
        seen.append(cfg)
        for name in ("store", "report"):
            cfg.paths.path(name).mkdir(parents=True)
        (cfg.paths.path("report") / "report.html").write_text("<html></html>")
        assert rerun == f"sae-store demo --out {tmp_path / 'demo'}"
        return []

    monkeypatch.setattr(jobs_cmds, "run_pipeline", fake_run)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    assert seen[0].paths.run_dir == tmp_path / "demo" and seen[0].demo is not None
    out = capsys.readouterr().out.splitlines()
    assert out == ["outputs:", f"  store     {tmp_path / 'demo' / 'store.zarr'}",
                   f"  report    {tmp_path / 'demo' / 'report'}",
                   f"open the report: {tmp_path / 'demo' / 'report' / 'report.html'}",
                   f"browse it: sae-store explore {tmp_path / 'demo' / 'store.zarr'}"
                   "  (then open the URL it prints; each feature page's test box runs the tiny model on an "
                   "image you upload)"]  # fmt: skip
