"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sae_store.store import ActivationStore, ModelInfo, StoreConfig, create_store

# No model hub: every model in the tests is built locally and loaded from its folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 model folder (seed 0), built once per session; treat it as read-only."""
    from sae_store.models.tiny import build_tiny_gemma3

    return build_tiny_gemma3(tmp_path_factory.mktemp("models") / "tiny-gemma3", seed=0)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def samples_table(n: int, *, prefix: str = "s") -> pd.DataFrame:
    """A samples table of ``n`` rows, alternating male and female."""
    return pd.DataFrame(
        {
            "sample_id": [f"{prefix}{i:04d}" for i in range(n)],
            "image": [f"img/{prefix}{i:04d}.png" for i in range(n)],
            "image_path": [f"/data/img/{prefix}{i:04d}.png" for i in range(n)],
            "gender": ["male" if i % 2 == 0 else "female" for i in range(n)],
            "en_caption": [f"A {'man' if i % 2 == 0 else 'woman'} in a park." for i in range(n)],
            "ar_caption": [f"{'رجل' if i % 2 == 0 else 'امرأة'} في الحديقة." for i in range(n)],
        }
    )


def model_info(**overrides: Any) -> ModelInfo:
    """A ModelInfo for synthetic stores (no model behind it)."""
    base: dict[str, Any] = {
        "identity": {"name_or_path": "synthetic", "model_type": "gemma3", "config_sha256": "0" * 64},
        "n_layers": 4,
        "hidden_size": 16,
        "prompts": {
            "en": "Describe the person in this image in detail.",
            "ar": "صف الشخص في هذه الصورة بالتفصيل.",
        },
        "tokens_per_language": {"en": 12, "ar": 14},
        "image_tokens": 4,
    }
    return ModelInfo(**{**base, **overrides})


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., ActivationStore]:
    """Factory for empty synthetic stores: ``make_store(n_samples=10, samples_per_shard=4, ...)``."""
    counter = iter(range(10_000))

    def make(
        n_samples: int = 10,
        *,
        samples_per_shard: int = 4,
        layers: list[int] | None = None,
        config: StoreConfig | None = None,
        **model_overrides: Any,
    ) -> ActivationStore:
        return create_store(
            tmp_path / f"store{next(counter)}.zarr",
            samples_table(n_samples),
            model_info(**model_overrides),
            layers=layers,
            config=config or StoreConfig(samples_per_shard=samples_per_shard),
        )

    return make


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline (``configs/demo.yaml``) run up to the report, without captions or
    interventions: a partly finished run on the demo's real data. Takes minutes; treat as read-only
    except in tests that finish it."""
    from sae_store.config import demo_config
    from sae_store.jobs import run_pipeline

    root = tmp_path_factory.mktemp("demo") / "run"
    cfg = demo_config(root)
    skip = ("caption", "intervene-ablate", "intervene-amplify", "intervene-neutralise", "intervene-summary")
    run_pipeline(replace(cfg, skip=skip), echo=lambda line: None)
    return root
