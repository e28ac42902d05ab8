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
_TESTS = Path(__file__).resolve().parent


#: Tests that use the ``demo_run`` fixture (minutes to build): one worker runs them all.
_DEMO_RUN_TESTS = (
    "test_api_doc_examples_run",
    "test_demo_report_reads_cleanly",
    "test_notebooks_find_the_demo_store_from_the_repository_or_their_folder",
    "test_report_commands_finish_the_demo_run_and_results_have_every_shape",
)
#: The groups that take longest, started first so that no worker is left with a long one at the end.
_LONGEST_FIRST = ("test_packaging", "demo_run", "jobs", "report", "faults")


def _group(nodeid: str) -> str:
    """The worker group of a test: the demo-run tests, else its folder (whose conftest's session
    fixtures are then built once), else its file at the top level."""
    path, _, name = nodeid.partition("::")
    if name.split("[")[0] in _DEMO_RUN_TESTS:
        return "demo_run"
    parts = Path(path).parts
    return parts[1] if len(parts) > 2 else Path(path).stem


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "demo_run" in getattr(item, "fixturenames", ()) and _group(item.nodeid) != "demo_run":
            raise pytest.UsageError(f"{item.nodeid} uses demo_run: add its name to _DEMO_RUN_TESTS")
    rank = {g: i for i, g in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))  # stable: file order kept


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``pytest -n N`` (what ``make test`` runs) sends each group of :func:`_group` to one worker,
    in collection order (the longest groups first)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


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


def cli_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The ``--help`` text of ``sae-store ARGV`` with its whitespace collapsed to single spaces (so that
    words wrapped by argparse can be searched for)."""
    from sae_store_cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo pipeline (``configs/demo.yaml``) run up to the analyses, without captions,
    interventions or report: a partly finished run on the demo's real data. Takes minutes; treat as read-only
    except in tests that finish it."""
    from sae_store.jobs import run_pipeline
    from sae_store.jobs.config import demo_config

    root = tmp_path_factory.mktemp("demo") / "run"
    cfg = demo_config(root)
    skip = ("caption", "intervene-ablate", "intervene-amplify", "intervene-neutralise", "intervene-summary",
            "report")  # fmt: skip
    run_pipeline(replace(cfg, skip=skip), echo=lambda line: None)
    return root
