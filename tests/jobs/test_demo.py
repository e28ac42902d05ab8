"""``sae-store demo`` records its settings in its folder and refuses a folder holding another demo
(``--quick`` after a full demo, or the reverse): one line naming the command that made it, ``--overwrite``
and ``--out``; nothing changed. ``--overwrite`` removes the demo's outputs only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sae_store.errors import ConfigError
from sae_store.jobs.demo import demo_outputs, open_demo
from sae_store_cli.main import main


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def test_a_quick_demo_folder_refuses_the_full_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    cfg = open_demo(root, quick=True, overwrite=False)
    record = json.loads((root / "pipeline_status" / "demo.json").read_text())
    assert record["quick"] is True and record["config"]["layers"] == [0, 2] == list(cfg.layers or ())
    (root / "store.zarr").mkdir()
    before = _tree(root)
    assert open_demo(root, quick=True, overwrite=False) == cfg  # the same demo resumes
    assert main(["demo", "--out", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"sae-store demo: error: '{root}' holds the run of `sae-store demo --out {root} --quick`; rerun that "
        f"to resume it, pass --overwrite to replace it with `sae-store demo --out {root}`, or choose another "
        "folder with --out DIR\n"
    )
    assert _tree(root) == before


def test_demo_outputs_without_a_record_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "old"
    (root / "saes" / "layer_0").mkdir(parents=True)
    (root / "store.zarr").mkdir()
    before = _tree(root)
    with pytest.raises(ConfigError) as info:
        open_demo(root, quick=False, overwrite=False)
    assert str(info.value) == (
        f"'{root}' holds store.zarr, saes but no record of the demo settings that made them "
        f"(pipeline_status/demo.json); pass --overwrite to replace it with `sae-store demo --out {root}`, or "
        "choose another folder with --out DIR"
    )
    assert _tree(root) == before


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
