"""The notebooks run top to bottom against a store, and their .ipynb and .py versions agree."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

from sae_store.store import ActivationStore

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("01_explore_store", "02_features_and_bias")


def _run(
    name: str, store: ActivationStore | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> nbformat.NotebookNode:
    """Run a notebook with its kernel in ``tmp_path``; ``store=None`` leaves the notebook's default."""
    if store is None:
        monkeypatch.delenv("SAE_STORE", raising=False)
    else:
        monkeypatch.setenv("SAE_STORE", str(store.path))
    nb = jupytext.read(NOTEBOOKS / f"{name}.py")
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return nb


class _Directions(HTMLParser):
    """Each text of an HTML document with the direction of the innermost element that sets one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []
        self.texts: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID_TAGS:
            self.stack.append((tag, dict(attrs).get("dir")))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        directions = [d for _, d in self.stack if d]
        self.texts.append((data, directions[-1] if directions else None))


VOID_TAGS = {"br", "img", "input", "hr", "meta", "link", "wbr", "col", "source"}
ARABIC = re.compile("[\u0600-\u06ff]+")


def _arabic_outside_rtl(nb: nbformat.NotebookNode) -> list[str]:
    """Arabic in the notebook's outputs that is not laid out right to left: in plain text or in an HTML
    element without dir="rtl"."""
    found = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            plain = [o.get("text", ""), *(v for k, v in data.items() if k != "text/html")]
            found += [text for text in plain if ARABIC.search(str(text))]
            parser = _Directions()
            parser.feed(data.get("text/html", ""))
            found += [text for text, direction in parser.texts if ARABIC.search(text) and direction != "rtl"]
    return found


def _text(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", NAMES)
def test_paired_versions_agree(name: str):
    py = jupytext.read(NOTEBOOKS / f"{name}.py")
    ipynb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in ipynb.cells]
    assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), (
        "commit notebooks without outputs"
    )


def test_explore_store_runs(full_store: ActivationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nb = _run("01_explore_store", full_store, tmp_path, monkeypatch)
    text = _text(nb)
    assert "layers: [0, 1, 2] languages: ['en', 'ar']" in text
    assert "image      16 tokens" in text  # the token roles of the synthetic prompt
    assert "100.0% complete" in text  # the status grid
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    assert '<p dir="rtl">صف الشخص في هذه الصورة بالتفصيل.</p>' in html  # the Arabic prompt
    assert _arabic_outside_rtl(nb) == []


def test_features_and_bias_runs(full_store: ActivationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nb = _run("02_features_and_bias", full_store, tmp_path, monkeypatch)
    text = _text(nb)
    assert "most active features on average, layer 2 (en)" in text
    assert "top male-biased features" in text
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # the volcano plot and the feature's image grid
    assert _arabic_outside_rtl(nb) == []


def test_features_and_bias_on_a_store_without_results(
    bare_store: ActivationStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    text = _text(_run("02_features_and_bias", bare_store, tmp_path, monkeypatch))
    assert f"no features group yet: run `sae-store encode {bare_store.path} --saes saes/`" in text
    assert f"no bias results yet: run `sae-store analyze bias {bare_store.path}`" in text


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["notebooks", "."])
def test_notebooks_find_the_demo_store_from_the_repository_or_their_folder(
    demo_run: Path, folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A checkout after `make demo`: the notebooks beside demo-output/, the kernel started in `folder`
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "demo-output").symlink_to(demo_run)
    cwd = repo / folder
    text = _text(_run("01_explore_store", None, cwd, monkeypatch))
    assert "layers: [0, 1, 2, 3] languages: ['en', 'ar']" in text
    assert "100.0% complete" in text
    nb = _run("02_features_and_bias", None, cwd, monkeypatch)
    text = _text(nb)
    assert "top male-biased features" in text and "top female-biased features" in text
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) == 2  # the volcano plot and the feature's image grid
    assert _arabic_outside_rtl(nb) == []
