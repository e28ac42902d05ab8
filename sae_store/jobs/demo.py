"""The demo's folder remembers the settings that made it, so a rerun resumes only the same demo.

``sae-store demo`` resumes the run in its folder: complete steps are skipped. Run with other settings
(``--quick`` after a full demo, or the reverse) it would skip the steps the other run finished and
mix the two. So the settings are recorded in ``RUN/pipeline_status/demo.json`` before the first step,
and a folder holding another demo is refused, naming the command that made it and the ways on:
rerun that command, ``--overwrite`` (which removes the demo's outputs, never other files), or a new
``--out``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sae_store.errors import ConfigError
from sae_store.jobs.config import PipelineConfig, demo_config
from sae_store.jobs.render import LOG_DIR, SCRIPT_DIR, STATUS_DIR

RECORD = "demo.json"
#: How long ``sae-store demo --quick`` takes on two cores (measured by ``benchmarks/bench_startup.py``;
#: the README and ``--help`` say it).
QUICK_TIME = "~2 min"


def demo_command(root: str | Path, quick: bool) -> str:
    return f"sae-store demo --out {root}{' --quick' if quick else ''}"


def _settings(cfg: PipelineConfig, quick: bool) -> dict[str, Any]:
    config = cfg.to_dict()
    config["paths"] = {k: v for k, v in config["paths"].items() if k != "root"}  # the folder may move
    return json.loads(json.dumps({"quick": quick, "config": config}))  # as read back from the file


def demo_outputs(cfg: PipelineConfig) -> list[Path]:
    """Everything a demo run writes in its folder (what ``--overwrite`` removes)."""
    p = cfg.paths
    written = [p.path("captions").parent, p.path("model"), p.path("prepared"), p.path("store"),
               p.path("saes"), p.path("results"), p.path("report")]  # fmt: skip
    return [*dict.fromkeys(written), *(p.run_dir / d for d in (STATUS_DIR, LOG_DIR, SCRIPT_DIR))]


def open_demo(root: str | Path, *, quick: bool, overwrite: bool) -> PipelineConfig:
    """The demo's config rooted at ``root``, after checking that the folder holds no other demo
    (or, with ``overwrite``, removing the outputs of the one it holds); records its settings.

    Raises
    ------
    ConfigError
        The folder holds a demo made with other settings, or demo outputs without a record of their
        settings; nothing is changed.
    """
    cfg = demo_config(root, quick=quick)
    record = cfg.paths.run_dir / STATUS_DIR / RECORD
    wanted = _settings(cfg, quick)
    ways = (
        f"pass --overwrite to replace it with `{demo_command(root, quick)}`, or choose another folder "
        "with --out DIR"
    )
    if overwrite:
        for path in demo_outputs(cfg):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    elif record.exists():
        recorded = _read(record)
        if recorded != wanted:
            made = demo_command(root, bool(recorded.get("quick")))
            if recorded.get("quick") == quick:
                old = recorded.get("config") or {}
                keys = sorted(k for k in {*old, *wanted["config"]} if old.get(k) != wanted["config"].get(k))
                made += f" with other demo settings ({', '.join(keys)}; an earlier version of sae-store)"
            raise ConfigError(f"{str(root)!r} holds the run of `{made}`; rerun that to resume it, {ways}")
    else:
        found = [path.name for path in demo_outputs(cfg) if path.exists()]
        if found:
            raise ConfigError(
                f"{str(root)!r} holds {', '.join(found)} but no record of the demo settings that made them "
                f"({STATUS_DIR}/{RECORD}); {ways}"
            )
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{RECORD}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(wanted, indent=2), encoding="utf-8")
    tmp.replace(record)
    return cfg


def _read(record: Path) -> dict[str, Any]:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"the demo's record {str(record)!r} is unreadable ({e}); pass --overwrite to start the demo again"
        ) from e
    if not isinstance(data, dict):
        raise ConfigError(f"the demo's record {str(record)!r} is not a JSON object; pass --overwrite")
    return data
