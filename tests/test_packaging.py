"""The packaging metadata agrees with the tree and with environment.yml."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda package names that differ from PyPI's (dask's "distributed" extra is its own conda package)
_CONDA_NAMES = {"pytorch": "torch"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name_and_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$", req)
    assert m, req
    return m.group(1).lower(), m.group(3).replace(" ", "").strip()


def test_every_subpackage_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "sae_store").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found | {"sae_store_cli"} == listed


def test_environment_yml_matches_pyproject():
    pyproject = {_name_and_spec(r)[0]: _name_and_spec(r)[1] for r in _pyproject()["project"]["dependencies"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if not isinstance(dep, str) or dep.startswith(("python", "pip")):
            continue
        name, spec = _name_and_spec(dep)
        conda[_CONDA_NAMES.get(name, name)] = spec
    assert conda.pop("distributed") == pyproject["dask"]
    for name, spec in pyproject.items():
        assert name in conda, f"{name} is in pyproject.toml but not in environment.yml"
        assert conda[name] == spec, f"{name}: pyproject {spec!r} vs environment.yml {conda[name]!r}"
    assert set(conda) <= set(pyproject), f"only in environment.yml: {set(conda) - set(pyproject)}"


def test_console_script_is_installed_under_its_own_import_name():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sae_store_cli.main, importlib.util; print(importlib.util.find_spec('cli'))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert out.stdout.strip() == "None"
    version = subprocess.run(
        [Path(sys.executable).parent / "sae-store", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("sae-store ")
