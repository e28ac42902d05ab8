"""``sae-store demo`` records its settings in its folder and refuses a folder holding another demo
(``--quick`` after a full demo, or the reverse): one line naming the command that made it, ``--overwrite``
and ``--out``; nothing changed. ``--overwrite`` removes the demo's outputs only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sae_store.errors import ConfigError
from sae_store.jobs.demo import QUICK_TIME, demo_outputs, open_demo
from sae_store_cli.main import main


@contextmanager
def _unchanged(root: Path) -> Iterator[None]:
    """Checks that the block leaves every file and folder under ``root`` as it was."""

    def tree() -> dict[str, bytes]:
        paths = sorted(root.rglob("*"))
        return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in paths}

    before = tree()
    yield
    assert tree() == before


def test_a_quick_demo_folder_refuses_the_full_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    cfg = open_demo(root, quick=True, overwrite=False)
    record = json.loads((root / "pipeline_status" / "demo.json").read_text())
    assert record["quick"] is True and record["config"]["layers"] == [0, 2] == list(cfg.layers or ())
    (root / "store.zarr").mkdir()
    with _unchanged(root):
        assert open_demo(root, quick=True, overwrite=False) == cfg  # the same demo resumes
        assert main(["demo", "--out", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"sae-store demo: error: '{root}' holds the run of `sae-store demo --out {root} --quick`; rerun that "
        f"to resume it, pass --overwrite to replace it with `sae-store demo --out {root}`, or choose another "
        "folder with --out DIR\n"
    )


def test_demo_outputs_without_a_record_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "saes" / "layer_0").mkdir(parents=True)
    (root / "store.zarr").mkdir()
    with _unchanged(root), pytest.raises(ConfigError) as info:
        open_demo(root, quick=False, overwrite=False)
    assert str(info.value) == (
        f"'{root}' holds store.zarr, saes but no record of the demo settings that made them "
        f"(pipeline_status/demo.json); pass --overwrite to replace it with `sae-store demo --out {root}`, or "
        "choose another folder with --out DIR"
    )


def test_overwrite_removes_the_demo_outputs_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    cfg = open_demo(root, quick=False, overwrite=False)
    for path in demo_outputs(cfg):
        (path / "x").mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("mine")
    quick = open_demo(root, quick=True, overwrite=True)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "pipeline_status"]
    assert json.loads((root / "pipeline_status" / "demo.json").read_text())["quick"] is True
    assert quick.layers == (0, 2)


def test_a_damaged_record_names_the_way_out(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    (root / "pipeline_status").mkdir(parents=True)
    (root / "pipeline_status" / "demo.json").write_text("{")
    with pytest.raises(
        ConfigError, match=r"the demo's record '.*demo.json' is unreadable \(.*\); pass --overwrite"
    ):
        open_demo(root, quick=False, overwrite=False)


def test_the_readme_and_help_give_the_quick_demo_time_the_benchmark_measures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # benchmarks/bench_startup.py times `demo --quick` against QUICK_TIME
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"sae-store demo --out demo-output --quick          # {QUICK_TIME}: two layers" in readme
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # help lines wrap anywhere
    assert f"interventions: checks an installation in {QUICK_TIME}" in shown
