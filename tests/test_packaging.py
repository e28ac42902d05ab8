"""The packaging metadata agrees with the tree and with environment.yml."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
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
    data = {"sae_store._data.configs", "sae_store._data.jobs"}  # ./configs and ./jobs as package data
    assert found | {"sae_store_cli"} | data == listed


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


def test_bench_extra_is_offered_to_conda_users():
    bench = _pyproject()["project"]["optional-dependencies"]["bench"]
    text = (ROOT / "environment.yml").read_text()
    uncommented = text.replace("  # - pip:", "  - pip:").replace("  #     - ", "      - ")
    assert {"pip": bench} in yaml.safe_load(uncommented)["dependencies"]
    command = "pip install " + " ".join(f'"{b}"' for b in bench)
    assert command in " ".join((ROOT / "README.md").read_text().split())  # across line breaks


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


def test_wheel_carries_the_configs_the_template_and_the_license(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("sae_store-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("configs/demo.yaml", "configs/gemma3-4b.yaml", "jobs/step.sbatch"):
        assert f"sae_store/_data/{rel}" in names, rel
        data = zipfile.ZipFile(wheel).read(f"sae_store/_data/{rel}")
        assert data == (ROOT / rel).read_bytes(), rel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


#: In the wheel's virtualenv: every requirement of the installed distribution is met, and sae_store and
#: sae_store_cli are imported from the virtualenv (the wheel), not from the source tree.
_CHECK_INSTALL = """
import json, sys
from importlib.metadata import distribution, version, PackageNotFoundError
from packaging.requirements import Requirement
import sae_store, sae_store_cli
unmet = []
for text in distribution("sae_store").requires or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue  # an extra's requirement
    try:
        if not req.specifier.contains(version(req.name), prereleases=True):
            unmet.append(f"{req} (installed {version(req.name)})")
    except PackageNotFoundError:
        unmet.append(f"{req} (not installed)")
print(json.dumps({"unmet": unmet, "files": [sae_store.__file__, sae_store_cli.__file__]}))
"""


def _dependency_dirs() -> list[str]:
    """The folders this environment's packages are installed in (site-packages), as plain paths: a
    virtualenv listing them sees the dependencies but no editable install of the source tree (whose
    finder is set up by a .pth file there, which plain paths do not run)."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


@pytest.mark.slow
def test_installed_wheel_runs_the_quick_demo_and_renders_the_cluster_config(tmp_path: Path) -> None:
    """From a built wheel installed with --no-deps into a fresh virtualenv that reuses this environment's
    dependencies (nothing downloaded: what pip would install is checked against the wheel's requirements),
    run in an unrelated folder."""
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels)],
        check=True,
    )  # fmt: skip
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
         "--no-compile", str(next(wheels.glob("*.whl")))],
        check=True,
    )  # fmt: skip
    # the virtualenv's own sys.path only; the example's paths.root names $USER
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "USER": os.environ.get("USER") or "ada"
    }
    check = [python, "-c", _CHECK_INSTALL]
    installed = json.loads(
        subprocess.run(check, capture_output=True, text=True, check=True, cwd=work, env=env).stdout
    )
    assert installed["unmet"] == []
    assert all(Path(f).is_relative_to(venv) for f in installed["files"]), installed["files"]
    exe = str(venv / "bin" / "sae-store")

    def run(*argv: str) -> str:
        out = subprocess.run([exe, *argv], cwd=work, capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    assert "open the report" in run("demo", "--out", "demo", "--quick")
    assert (work / "demo" / "report" / "report.html").is_file()
    run("jobs", "example", "gemma3-4b", "--out", "cluster.yaml")
    printed = run("jobs", "render", "--config", "cluster.yaml", "--out", "scripts").split()
    assert [Path(p).name for p in printed][:3] == ["prepare.sbatch", "init.sbatch", "extract.sbatch"]
    train = (work / "scripts" / "train.sbatch").read_text()
    assert "#SBATCH --array=0-33%4" in train  # `layers: 0-33`, no model folder needed
    assert not (work / "scripts" / "train.sbatch").read_text().count("@{")


def test_notebook_extra_installs_a_jupyter_front_end_and_the_readme_says_how():
    extra = [_name_and_spec(r)[0] for r in _pyproject()["project"]["optional-dependencies"]["notebook"]]
    assert "jupyterlab" in extra and "ipykernel" in extra
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[notebook]"' in readme
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{nb.name}" in readme
