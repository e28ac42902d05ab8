"""Before a run starts: the inputs it reads exist, and a config copied from an example was edited.

``sae-store jobs submit`` (and ``pipeline``, for the inputs) check these before anything is written or
submitted, so an unedited example config is one message listing what to change, not a chain of jobs
failing one after the other hours later.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from sae_store.errors import ConfigError
from sae_store.jobs.config import PathName, PipelineConfig
from sae_store.resources import example_configs

#: Keys of the ``slurm`` section that name the user's site: an example's value there is a placeholder.
SITE_KEYS = ("account", "mail_user")
#: Domains reserved for examples (RFC 2606): no mail reaches them.
_EXAMPLE_MAIL = re.compile(r"@example\.(org|com|net)$", re.IGNORECASE)


def missing_inputs(cfg: PipelineConfig) -> list[str]:
    """The inputs the run reads that are not there (none with a ``demo`` section, which makes them)."""
    if cfg.demo is not None:
        return []
    needed: list[PathName] = ["model", "images"]
    if not (cfg.paths.path("prepared") / "samples.csv").exists():
        needed.insert(0, "captions")
    return [
        f"paths.{name} {str(cfg.paths.path(name))!r} does not exist"
        for name in needed
        if not cfg.paths.path(name).exists()
    ]


def placeholders(cfg: PipelineConfig) -> list[str]:
    """The ``slurm`` keys still holding an example config's value (an account, a mail address)."""
    if cfg.slurm is None:
        return []
    examples: dict[str, set[Any]] = {key: set() for key in SITE_KEYS}
    for path in example_configs().values():
        slurm = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("slurm") or {}
        for key in SITE_KEYS:
            if slurm.get(key) is not None:
                examples[key].add(slurm[key])
    found = []
    for key in SITE_KEYS:
        value = getattr(cfg.slurm, key)
        if value in examples[key] or (key == "mail_user" and value and _EXAMPLE_MAIL.search(value)):
            found.append(f"slurm.{key} is still the example's {value!r}")
    return found


def check_ready(cfg: PipelineConfig, config_file: str, *, slurm: bool) -> None:
    """Refuse a run whose inputs are missing, or (``slurm``) whose ``slurm`` section holds placeholders.

    Raises
    ------
    ConfigError
        One message listing every problem and how to fix it.
    """
    problems = missing_inputs(cfg) + (placeholders(cfg) if slurm else [])
    if problems:
        fix = f"edit {config_file}" if config_file else "edit the config"
        account = (
            " (`sacctmgr show associations user=$USER` lists your accounts)"
            if any("account" in p for p in problems)
            else ""
        )
        raise ConfigError(f"the run is not ready: {'; '.join(problems)}; {fix}{account} and try again")
