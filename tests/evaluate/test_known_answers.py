"""``evaluate`` end to end on a synthetic store built so that every number is known in advance.

Samples alternate male and female; each female sample's vectors are its male partner's negated, so
every (language, role) split has a per-dimension mean of exactly 0 (and so has every batch of 16
samples, which SAEBench's legacy explained variance uses). Every token has exactly three non-zero
dimensions among 1-10 (values multiples of 0.5, exact in any precision); image tokens also carry the
gender on dimension 0 (+2 male, -2 female) and are the same in both languages; dimensions 11-15 are
never used. Hence, with the identity SAE (latents relu(x), relu(-x)) and the zero SAE:

- explained variance (both formulas): 1 for the identity, 0 for the zero SAE (the data are centred);
- L0: 4 on image tokens, 3 on text and special tokens; dead latents 10 of 32;
- the gender probe from the top latent: 1.0; the language probe from image tokens (identical in both
  languages, one image's rows in one fold): exactly 0.5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sae_store.evaluate import EvaluateConfig, evaluate_store, read_evaluations
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.train.formats import save_sae
from tests.train.conftest import token_roles

from .conftest import identity_sae, zero_sae

HIDDEN, N_SAMPLES, USED = 16, 20, np.arange(1, 11)


def _tokens(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, HIDDEN] vectors with three non-zero dimensions among :data:`USED`, values in {0.5, ..., 2}."""
    x = np.zeros((n, HIDDEN), dtype=np.float32)
    for row in x:
        row[rng.choice(USED, 3, replace=False)] = rng.integers(1, 5, 3) / 2
    return x


def _fill(store: ActivationStore) -> dict[tuple[str, str], np.ndarray]:
    """Write the activations described in the module docstring; every token by (language, role)."""
    lay = store.layout
    rng = np.random.default_rng(0)
    image_tokens = int(store.attrs["image_tokens"])
    roles = {
        g: token_roles(n, lay.max_tokens, image_tokens) for g, n in store.attrs["tokens_per_language"].items()
    }
    acts = {g: np.full((lay.n_samples, lay.max_tokens, HIDDEN), np.nan, np.float32) for g in lay.languages}
    for pair in range(lay.n_samples // 2):
        image = _tokens(rng, image_tokens)
        image[:, 0] = 2.0
        for g in lay.languages:
            real = roles[g] != int(TokenRole.PAD)
            male = acts[g][2 * pair]
            male[real] = _tokens(rng, int(real.sum()))
            male[roles[g] == int(TokenRole.IMAGE)] = image
            acts[g][2 * pair + 1] = -male
    split: dict[tuple[str, str], np.ndarray] = {}
    for g in lay.languages:
        for role in (TokenRole.IMAGE, TokenRole.TEXT, TokenRole.SPECIAL):
            split[(g, role.name.lower())] = acts[g][:, roles[g] == int(role)].reshape(-1, HIDDEN)
        for b in store.blocks:
            n = b.stop - b.start
            store.write(S.TOKEN_ROLE, np.tile(roles[g], (n, 1)), start=b.start, language=g)
            n_tokens = np.full(n, store.attrs["tokens_per_language"][g], np.int32)
            store.write(S.N_TOKENS, n_tokens, start=b.start, language=g)
            for layer in lay.layers:
                store.write(S.ACTIVATIONS, acts[g][b.start : b.stop], start=b.start, layer=layer, language=g)
                store.write(S.COMPLETE, np.ones(n, bool), start=b.start, layer=layer, language=g)
    return split


def test_a_synthetic_store_gives_the_numbers_known_by_construction(
    make_store: Callable[..., ActivationStore], tmp_path: Path
) -> None:
    store = make_store(n_samples=N_SAMPLES, samples_per_shard=4, layers=[0], hidden_size=HIDDEN)
    split = _fill(store)
    save_sae(identity_sae(HIDDEN), tmp_path / "identity" / "layer_0")
    save_sae(zero_sae(HIDDEN, seed=0), tmp_path / "zero" / "layer_0")
    config = EvaluateConfig(samples="all", behaviour=False, probe_k=(1,), folds=5)
    specs = [str(tmp_path / "identity"), str(tmp_path / "zero")]
    evaluate_store(store, specs, config, out_dir=tmp_path / "out", progress=False)
    evals = read_evaluations(store)
    ident, zero = evals["identity"].sel(layer=0), evals["zero"].sel(layer=0)

    for (language, role), x in split.items():
        a = ident["reconstruction"].sel(language=language, role=role)
        z = zero["reconstruction"].sel(language=language, role=role)
        assert float(a.sel(metric="tokens")) == len(x) == float(z.sel(metric="tokens"))
        for metric in ("explained_variance", "explained_variance_legacy", "cossim"):
            assert float(a.sel(metric=metric)) == pytest.approx(1.0, abs=1e-9), (language, role, metric)
        for metric in ("explained_variance", "explained_variance_legacy", "cossim"):
            assert float(z.sel(metric=metric)) == pytest.approx(0.0, abs=1e-9), (language, role, metric)
        assert float(a.sel(metric="mse")) == pytest.approx(0.0, abs=1e-12)
        sq = (x.astype(np.float64) ** 2).sum(1).mean()
        assert float(z.sel(metric="mse")) == pytest.approx(sq, rel=1e-9)
        assert float(a.sel(metric="l0")) == (4 if role == "image" else 3), (language, role)
        assert float(a.sel(metric="l1")) == pytest.approx(np.abs(x).sum(1).mean(), rel=1e-9)

    total = ident["reconstruction_total"].sel(role="all")
    assert float(total.sel(metric="dead_fraction")) == 10 / 32  # dimensions 11-15, both signs
    assert float(total.sel(metric="explained_variance")) == pytest.approx(1.0, abs=1e-9)
    zero_total = zero["reconstruction_total"].sel(role="all", metric="explained_variance")
    assert float(zero_total) == pytest.approx(0.0, abs=1e-9)

    probing = ident["probing"].sel(probe_stat="accuracy")
    for language in ("en", "ar"):
        assert float(probing.sel(probe=f"gender/{language}/image", probe_input="sae_top_1")) == 1.0
        assert float(probing.sel(probe=f"gender/{language}/image", probe_input="raw_top_1")) == 1.0
    assert float(probing.sel(probe="language/image", probe_input="sae_top_1")) == 0.5
    assert float(probing.sel(probe="language/image", probe_input="sae_all")) == 0.5
