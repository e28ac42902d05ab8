"""Fixtures of the training tests: synthetic stores filled with activations from a known sparse
dictionary (no model behind them).

``fill_store`` and the ``filled_store`` factory could move to ``tests/conftest.py`` for other areas
(analysis, encoding) that need a store with activations.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sae_store.roles import TokenRole
from sae_store.store import ActivationStore, StoreConfig, create_store, open_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16
from sae_store.train.archs.jumprelu import JumpReLUSAE
from sae_store.train.config import DataConfig, RunConfig, SaeConfig, TrainerConfig
from sae_store.train.sae import SparseAutoencoder, build_sae
from tests.conftest import model_info, samples_table


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    """Tiny matmuls on a shared 2-core machine run ~30x slower with two spinning OpenMP threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_config(layer: int = 1, **overrides: Any) -> RunConfig:
    """A small, fast run configuration; ``overrides`` are ``sae_<field>``, ``data_<field>`` or
    ``trainer_<field>`` keyword arguments."""
    parts: dict[str, dict[str, Any]] = {
        "sae": {"architecture": "topk", "k": 3, "expansion": 4},
        "data": {"layer": layer, "batch_size": 64},
        "trainer": {"steps": 60, "lr": 3e-3, "lr_warmup_steps": 10, "log_every": 20, "checkpoint_every": 0},
    }
    for key, value in overrides.items():
        part, _, name = key.partition("_")
        parts[part][name] = value
    return RunConfig(
        SaeConfig(**parts["sae"]), DataConfig(**parts["data"]), TrainerConfig(**parts["trainer"])
    )


def perturbed_sae(config: SaeConfig, *, seed: int, noise: float, max_threshold: float) -> SparseAutoencoder:
    """``build_sae(config, seed=seed)`` moved away from its initial values: ``noise`` x N(0, 1) added to
    every parameter and JumpReLU thresholds uniform in [0, ``max_threshold``), drawn in that order from
    one generator seeded ``seed + 1``."""
    sae = build_sae(config, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
        if isinstance(sae, JumpReLUSAE):
            sae.threshold.copy_(torch.rand(sae.d_sae, generator=gen) * max_threshold)
    return sae


def sparse_dictionary(n_atoms: int, d: int, *, seed: int = 0) -> np.ndarray:
    """``n_atoms`` random unit vectors of width ``d`` [n_atoms, d]."""
    atoms = np.random.default_rng(seed).normal(size=(n_atoms, d))
    return (atoms / np.linalg.norm(atoms, axis=1, keepdims=True)).astype(np.float32)


def sparse_codes(rng: np.random.Generator, n: int, n_atoms: int, k: int) -> np.ndarray:
    """[n, n_atoms] codes with exactly ``k`` positive entries per row (uniform in [0.5, 2])."""
    codes = np.zeros((n, n_atoms), dtype=np.float32)
    idx = np.argsort(rng.random((n, n_atoms)), axis=1)[:, :k]
    np.put_along_axis(codes, idx, rng.uniform(0.5, 2.0, size=(n, k)).astype(np.float32), axis=1)
    return codes


def token_roles(n_tokens: int, max_tokens: int, image_tokens: int) -> np.ndarray:
    """One sample's roles: BOS (special), the image tokens, text, a closing special token, padding."""
    roles = np.full(max_tokens, int(TokenRole.PAD), dtype=np.int8)
    roles[0] = roles[n_tokens - 1] = int(TokenRole.SPECIAL)
    roles[1 : 1 + image_tokens] = int(TokenRole.IMAGE)
    roles[1 + image_tokens : n_tokens - 1] = int(TokenRole.TEXT)
    return roles


def fill_store(
    store: ActivationStore,
    *,
    layers: Sequence[int] | None = None,
    languages: Sequence[str] | None = None,
    blocks: Sequence[int] | None = None,
    n_atoms: int = 32,
    k: int = 3,
    norm: float = 20.0,
    noise: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """Write activations, token roles, n_tokens and completion flags for whole shard blocks.

    Real tokens are sums of ``k`` atoms of a fixed dictionary (returned, [n_atoms, hidden]) times
    ``norm`` plus a little noise, rounded to bfloat16 as extraction writes them into a bf16 store;
    padding positions hold NaN (never selected).
    """
    lay = store.layout
    dictionary = sparse_dictionary(n_atoms, lay.hidden_size, seed=seed)
    tokens = store.attrs["tokens_per_language"]
    image_tokens = int(store.attrs["image_tokens"])
    rng = np.random.default_rng(seed + 1)
    for b in [store.blocks[i] for i in (blocks if blocks is not None else range(len(store.blocks)))]:
        n = b.stop - b.start
        for lang in languages or lay.languages:
            n_tok = tokens[lang]
            roles = np.tile(token_roles(n_tok, lay.max_tokens, image_tokens), (n, 1))
            store.write(S.TOKEN_ROLE, roles, start=b.start, language=lang)
            store.write(S.N_TOKENS, np.full(n, n_tok, dtype=np.int32), start=b.start, language=lang)
            for layer in layers if layers is not None else lay.layers:
                codes = sparse_codes(rng, n * lay.max_tokens, n_atoms, k)
                x = norm * codes @ dictionary + noise * rng.normal(size=(n * lay.max_tokens, lay.hidden_size))
                x = round_to_bf16(x.astype(np.float32)).reshape(n, lay.max_tokens, lay.hidden_size)
                x[roles == int(TokenRole.PAD)] = np.nan
                store.write(S.ACTIVATIONS, x, start=b.start, layer=layer, language=lang)
                store.write(S.COMPLETE, np.ones(n, bool), start=b.start, layer=layer, language=lang)
    return dictionary


@pytest.fixture(scope="session")
def _filled_templates() -> dict[str, Path]:
    return {}


@pytest.fixture
def filled_store(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, _filled_templates: dict[str, Path]
) -> Callable[..., ActivationStore]:
    """Factory: ``filled_store(n_samples=24, samples_per_shard=4, hidden_size=16, layers=[0, 1], ...)``,
    a synthetic store with every block of the given layers written (see :func:`fill_store`).

    Each distinct set of arguments is built once per session and copied for every test.
    """
    counter = iter(range(10_000))

    def make(
        n_samples: int = 24,
        *,
        samples_per_shard: int = 4,
        hidden_size: int = 16,
        layers: list[int] | None = None,
        fill: dict[str, Any] | None = None,
        **model_overrides: Any,
    ) -> ActivationStore:
        layers = [0, 1] if layers is None else layers
        key = repr(
            (
                n_samples,
                samples_per_shard,
                hidden_size,
                layers,
                sorted((fill or {}).items()),
                sorted(model_overrides.items()),
            )
        )
        if key not in _filled_templates:
            path = tmp_path_factory.mktemp("filled-template") / "store.zarr"
            store = create_store(
                path,
                samples_table(n_samples),
                model_info(hidden_size=hidden_size, **model_overrides),
                layers=layers,
                config=StoreConfig(samples_per_shard=samples_per_shard),
            )
            fill_store(store, **(fill or {}))
            _filled_templates[key] = path
        target = tmp_path / f"filled{next(counter)}.zarr"
        shutil.copytree(_filled_templates[key], target)
        return open_store(target)

    return make
