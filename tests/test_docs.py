"""The examples of docs/api.md run, in order, against a demo run (as a reader would run them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_api_doc_names_the_public_functions() -> None:
    text = DOC.read_text()
    for name in ("open_store", "load_sae", "train_layer", "encode_features", "read_analysis", "completion"):
        assert f"`{name}" in text or f"{name}(" in text, name
    assert len(_blocks(text)) >= 5


@pytest.mark.slow
def test_api_doc_examples_run(demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(demo_run, tmp_path / "demo-output")  # the examples may write (train a layer)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "api_doc"}
    for i, block in enumerate(_blocks(DOC.read_text())):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
