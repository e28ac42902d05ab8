"""The structure of docs/architecture.md, checked: what may import what, the explorer's public-API-only
rule, and the size of modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sae_store"
#: Packages of sae_store whose insides other packages reach only through their face (``__init__``).
FACES = ("analyze", "data", "evaluate", "models", "report", "train")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def test_the_import_contracts_hold() -> None:
    # the layers and the base modules (pyproject.toml's [tool.importlinter]), checked by import-linter
    out = subprocess.run(
        [Path(sys.executable).parent / "lint-imports", "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def test_the_explorer_uses_only_the_store_reader_and_public_apis() -> None:
    allowed_store = {"sae_store.store", "sae_store.store.results", "sae_store.store.schema"}
    bad = []
    for path in sorted((PACKAGE / "explore").glob("*.py")):
        for module in _imports(path):
            parts = module.split(".")
            if parts[0] != "sae_store" or len(parts) < 2 or parts[1] == "explore":
                continue
            inside = parts[1] in FACES and len(parts) > 2
            if inside or (parts[1] == "store" and module not in allowed_store):
                bad.append(f"{path.name}: {module}")
    assert bad == []


def test_no_module_is_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
        for folder in (PACKAGE, REPO / "cli")
        for p in folder.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 400} == {}
