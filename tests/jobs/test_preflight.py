"""A config copied from an example is checked before a run: inputs exist, placeholders were edited,
environment variables in paths are set; the copy's header names the copy. Nothing is written on refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sae_store.jobs.config import PipelineConfig
from sae_store.jobs.preflight import placeholders
from sae_store_cli.main import main


def _copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "cluster.yaml"
    assert main(["jobs", "example", "gemma3-4b", "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_the_copy_names_itself_in_its_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = _copy(tmp_path, capsys).read_text()
    head = text.split("paths:")[0]
    assert f"sae-store jobs submit --config {tmp_path / 'cluster.yaml'}" in head
    assert "configs/gemma3-4b.yaml" not in text


def test_submitting_the_unedited_example_names_everything_to_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "ada")
    config = _copy(tmp_path, capsys)
    run = tmp_path / "run"
    config.write_text(config.read_text().replace("/scratch/$USER/gemma3-bias", str(run)))
    before = sorted(tmp_path.iterdir())
    for command in (["jobs", "submit"], ["pipeline"]):
        assert main([*command, "--config", str(config)]) == 2
    submit_err, pipeline_err = capsys.readouterr().err.splitlines()
    missing = (
        "paths.captions '/data/flickr8k-ar/captions.csv' does not exist; paths.model '/models/gemma-3-4b-it' "
        "does not exist; paths.images '/data/flickr8k-ar/images' does not exist"
    )
    assert submit_err == (
        f"sae-store jobs submit: error: the run is not ready: {missing}; slurm.account is still the "
        f"example's 'my-project'; slurm.mail_user is still the example's 'me@example.org'; edit {config} "
        "(`sacctmgr show associations user=$USER` lists your accounts) and try again"
    )
    assert (
        pipeline_err
        == f"sae-store pipeline: error: the run is not ready: {missing}; edit the config and try again"
    )
    assert sorted(tmp_path.iterdir()) == before  # no run folder, no job scripts


def test_a_mail_address_of_an_example_domain_is_a_placeholder(
    make_config: Callable[..., PipelineConfig],
) -> None:
    slurm = {"partition": "p", "mail_user": "x@EXAMPLE.com", "mail_types": ["END"]}
    assert placeholders(make_config(slurm=slurm)) == [
        "slurm.mail_user is still the example's 'x@EXAMPLE.com'"
    ]
    slurm = {**slurm, "account": "bio-lab", "mail_user": "x@uni.edu"}
    assert placeholders(make_config(slurm=slurm)) == []


def test_an_unset_variable_in_a_path_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    config = _copy(tmp_path, capsys)
    assert main(["jobs", "render", "--config", str(config), "--out", str(tmp_path / "scripts")]) == 2
    assert capsys.readouterr().err == (
        "sae-store jobs render: error: paths.root '/scratch/$USER/gemma3-bias' names $USER, which is not set "
        "here; set it (export USER=...) or write the path out\n"
    )
    config.write_text(config.read_text().replace("/scratch/$USER/gemma3-bias", "${SCRATCH}/run"))
    assert main(["jobs", "render", "--config", str(config), "--out", str(tmp_path / "scripts")]) == 0
    assert (
        str(tmp_path / "scratch" / "run" / "store.zarr") in (tmp_path / "scripts" / "init.sbatch").read_text()
    )
    assert not Path("/scratch/$USER").exists()
