"""``encode``'s per-role statistics: a planted feature that fires on exactly the image tokens, and the
features groups encoded before the per-role arrays existed (resumed, refused, encoded again)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from sae_store.errors import SaeStoreError
from sae_store.roles import TokenRole
from sae_store.store import schema as S
from sae_store.store.schema import FEATURES
from sae_store.train.config import SaeConfig
from sae_store.train.encode import encode_features
from sae_store.train.formats import save_sae
from sae_store.train.sae import build_sae
from sae_store_cli.main import main
from tests.report.synthetic import drop_role_arrays

from .test_encode import _save


def _planted_sae(folder, d_in: int = 16):
    """A ReLU SAE whose feature 0 reads channel 0 (> 0 fires), feature 1 its opposite; 2 and 3 never fire."""
    sae = build_sae(SaeConfig(architecture="relu", d_in=d_in, d_sae=4), seed=0)
    with torch.no_grad():
        sae.W_enc.zero_(), sae.b_enc.zero_(), sae.b_dec.zero_()
        sae.W_enc[0, 0], sae.W_enc[0, 1] = 1.0, -1.0
    save_sae(sae, folder)


def test_planted_image_feature_has_exact_per_role_fractions(filled_store, tmp_path):
    store = filled_store(layers=[0])
    roles = np.asarray(store.zarr_group()[S.TOKEN_ROLE][0])  # en
    image, text = roles == int(TokenRole.IMAGE), roles == int(TokenRole.TEXT)
    acts = np.asarray(store.zarr_group()[S.ACTIVATIONS][0, 0])
    # channel 0: +1 on the image and special tokens, -1 on the text tokens
    acts[..., 0] = np.where(text, -1.0, 1.0)
    acts[3][text[3]] = np.nan  # sample 3 keeps no text token
    acts[5, np.flatnonzero(image[5])[:2]] = np.nan  # sample 5 loses two image tokens
    for b in store.blocks:
        store.write(S.ACTIVATIONS, acts[b.start : b.stop], start=b.start, layer=0, language="en")
    _planted_sae(tmp_path / "saes" / "layer_0")
    encode_features(store, {0: tmp_path / "saes" / "layer_0"}, progress=False)
    sel = store.dataset(group=FEATURES).sel(layer=0, language="en").load()
    n_image, n_text = image.sum(axis=1), text.sum(axis=1)
    n_image[5] -= 2
    n_text[3] = 0
    np.testing.assert_array_equal(sel.role_tokens.sel(role="image").values, n_image)
    np.testing.assert_array_equal(sel.role_tokens.sel(role="text").values, n_text)
    frac = sel.role_frac.values  # sample, role (image, text), feature
    expected = np.zeros_like(frac)
    expected[:, 0, 0] = 1.0  # feature 0 on every image token, no text token
    expected[:, 1, 1] = 1.0  # feature 1 on every text token
    expected[3, 1] = np.nan  # no text token left
    np.testing.assert_array_equal(frac, expected)
    # the combined fraction is the roles' tokens pooled
    np.testing.assert_allclose(sel.feature_frac.values[:, 0], n_image / (n_image + n_text), rtol=1e-7)
    np.testing.assert_array_equal(sel.tokens_used.values, n_image + n_text)


def _files(store) -> dict[str, str]:
    root = store.path / FEATURES
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_group_encoded_before_roles_is_resumed_refused_or_encoded_again(filled_store, tmp_path, capsys):
    store = filled_store()
    saes = tmp_path / "saes"
    _save(saes / "layer_0")
    _save(saes / "layer_1", seed=1)
    encode_features(store, {0: saes / "layer_0"}, progress=False)
    drop_role_arrays(store)  # as encode wrote the group before
    before = _files(store)
    assert S.ROLE_FRAC not in store.zarr_group(FEATURES)
    # everything asked for is complete: nothing to write, nothing refused
    again = encode_features(store, {0: saes / "layer_0"}, progress=False)
    assert (again.encoded, again.skipped) == (0, 12) and _files(store) == before
    # a layer to add: refused before anything changes (per-role arrays would be half-written)
    message = (
        f"the store's features group was encoded before per-role statistics (role_frac, role_tokens) were "
        f"stored, so it cannot be added to; encode it again with `sae-store encode {store.path} --saes "
        "SAE_DIR --overwrite` (this discards the features encoded so far)"
    )
    both = {0: saes / "layer_0", 1: saes / "layer_1"}
    with pytest.raises(SaeStoreError) as err:
        encode_features(store, both, progress=False)
    assert str(err.value) == message and _files(store) == before
    with pytest.raises(SaeStoreError, match="encode it again"):  # any array task of it
        encode_features(store, both, task_index=1, task_count=2, progress=False)
    assert _files(store) == before
    # the command: one line naming the way on, a non-zero exit
    assert main(["encode", str(store.path), "--saes", str(saes), "--no-progress"]) == 2
    assert message in capsys.readouterr().err and _files(store) == before
    # --overwrite encodes it again, with the per-role arrays
    redone = encode_features(store, both, restart=True, progress=False)
    assert redone.encoded == 2 * 2 * 6
    ds = store.dataset(group=FEATURES)
    assert bool(ds.complete.all()) and bool((ds.role_tokens >= 0).all())
    assert np.isfinite(ds.role_frac.sel(role="image")).all()
