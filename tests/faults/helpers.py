"""Running the real command in a process that is SIGKILLed at a named point or at a random time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from sae_store.faults import ENV_VAR
from sae_store.train.config import SaeConfig
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from tests.extract.helpers import cli_env


def env(kill_point: str | None = None) -> dict[str, str]:
    """The environment of a command run (see :func:`cli_env`), killed at ``kill_point`` if given."""
    out = cli_env()
    out.pop(ENV_VAR, None)
    if kill_point:
        out[ENV_VAR] = kill_point
    return out


def start(args: list[str], kill_point: str | None = None) -> subprocess.Popen[str]:
    """Start ``sae-store ARGS`` in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "sae_store_cli", *args],
        env=env(kill_point),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_killed(args: list[str], kill_point: str) -> None:
    """Run ``sae-store ARGS`` and check that it was SIGKILLed at ``kill_point``."""
    proc = start(args, kill_point)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -9, f"{kill_point} was not reached:\n{out}"


def save_saes(folder: Path, layers: list[int], d_in: int) -> Path:
    """Small random SAEs, one per layer, in ``folder/layer_<L>``."""
    for layer in layers:
        sae = build_sae(SaeConfig(architecture="topk", d_in=d_in, d_sae=24, k=4), seed=layer)
        with torch.no_grad():
            sae.b_enc.add_(0.05)
        save_sae(sae, folder / f"layer_{layer}", scale=0.1)
    return folder
