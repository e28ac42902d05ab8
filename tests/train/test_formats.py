"""SAE folders: our export read back and read as SAELens would; sparsify and Gemma Scope folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sae_store.errors import ModelLoadError
from sae_store.train.config import SaeConfig
from sae_store.train.formats import load_sae, save_sae, sha256_file

from .conftest import perturbed_sae

SCALE = 0.25
D_IN = 10


def _trained_like(arch: str, seed: int = 0, decoder_init_norm: float = 0.0):
    """An SAE with non-trivial parameters, as if trained on inputs scaled by SCALE."""
    config = SaeConfig(architecture=arch, d_in=D_IN, expansion=3, k=4, decoder_init_norm=decoder_init_norm)
    sae = perturbed_sae(config, seed=seed, noise=0.2, max_threshold=0.3)
    if arch in ("batchtopk", "matryoshka_batchtopk"):
        with torch.no_grad():
            sae.topk_threshold.fill_(0.15)
    return sae.eval()


def _saved_latents(sae, x: torch.Tensor) -> torch.Tensor:
    """What the saved SAE computes on raw ``x``: the trained latents on ``x * SCALE``, times the decoder
    norm that saving folds into the encoder (norm-constrained architectures)."""
    factor = sae.decoder_norm if sae.unit_norm_decoder else 1.0
    return sae.encode(x * SCALE) * factor


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu", "matryoshka_batchtopk"])
@pytest.mark.parametrize("norm", [0.0, 0.1])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, arch, norm):
    sae = _trained_like(arch, decoder_init_norm=norm)
    x = torch.randn(40, D_IN) * 4
    save_sae(
        sae,
        tmp_path / "sae",
        scale=SCALE,
        metadata={"hook_name": "blocks.1.hook_resid_post"},
        provenance={"layer": 1},
    )
    loaded = load_sae(tmp_path / "sae")
    assert loaded.format == "sae_store"
    assert loaded.cfg["sae_store"]["architecture"] == arch and loaded.cfg["sae_store"]["norm_scale"] == SCALE
    assert loaded.sae.architecture == ("jumprelu" if "batchtopk" in arch else arch)
    assert not loaded.sae.training
    # the saved SAE works on raw activations: same latents as the trained one on scaled inputs
    torch.testing.assert_close(loaded.sae.encode(x), _saved_latents(sae, x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded.sae(x).sae_out, sae(x * SCALE).sae_out / SCALE, rtol=1e-5, atol=1e-5)
    again = tmp_path / "again"
    save_sae(loaded.sae, again)
    assert load_sae(again).sae.state_dict().keys() == loaded.sae.state_dict().keys()
    for name, value in load_sae(again).sae.state_dict().items():
        assert torch.equal(value, loaded.sae.state_dict()[name]), name


def _saelens_forward(folder, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What SAELens computes from the folder (its TopKSAE / StandardSAE / JumpReLUSAE formulas)."""
    cfg = json.loads((folder / "cfg.json").read_text())
    with safe_open(str(folder / "sae_weights.safetensors"), framework="np") as f:
        w = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}  # noqa: SIM118
    sae_in = x - w["b_dec"] * cfg["apply_b_dec_to_input"]
    hidden = sae_in @ w["W_enc"] + w["b_enc"]
    if cfg["architecture"] == "topk":
        acts = np.zeros_like(hidden)
        top = np.argsort(-hidden, axis=1)[:, : cfg["k"]]
        np.put_along_axis(acts, top, np.maximum(np.take_along_axis(hidden, top, 1), 0), 1)
    elif cfg["architecture"] == "jumprelu":
        acts = np.maximum(hidden, 0) * (hidden > w["threshold"])
    else:
        acts = np.maximum(hidden, 0)
    return acts, acts @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize(
    ("arch", "saelens_arch"),
    [
        ("topk", "topk"),
        ("batchtopk", "jumprelu"),
        ("relu", "standard"),
        ("jumprelu", "jumprelu"),
        ("matryoshka_batchtopk", "jumprelu"),
    ],
)
def test_export_reads_as_saelens_reads_it(tmp_path, arch, saelens_arch):
    sae = _trained_like(arch, decoder_init_norm=0.3)
    folder = save_sae(
        sae,
        tmp_path / "sae",
        scale=SCALE,
        metadata={"model_name": "google/gemma-3-4b-it", "hook_name": "blocks.3.hook_resid_post"},
    )
    cfg = json.loads((folder / "cfg.json").read_text())
    # SAELens v6 SAEConfig fields (d_in, d_sae, dtype, device, apply_b_dec_to_input, normalize_activations,
    # reshape_activations, metadata) plus the architecture name its registry knows
    assert cfg["architecture"] == saelens_arch
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"], cfg["device"]) == (D_IN, 3 * D_IN, "float32", "cpu")
    assert cfg["apply_b_dec_to_input"] is True
    assert cfg["normalize_activations"] == "none" and cfg["reshape_activations"] == "none"
    assert cfg["metadata"]["hook_name"] == cfg["hook_name"] == "blocks.3.hook_resid_post"
    if saelens_arch == "topk":
        assert cfg["k"] == 4 and cfg["rescale_acts_by_decoder_norm"] is False
    expected_keys = {"W_enc", "W_dec", "b_enc", "b_dec"} | (
        {"threshold"} if saelens_arch == "jumprelu" else set()
    )
    with safe_open(str(folder / "sae_weights.safetensors"), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert set(shapes) == expected_keys and dtypes == {torch.float32}
    assert shapes["W_enc"] == (D_IN, 3 * D_IN) and shapes["W_dec"] == (3 * D_IN, D_IN)
    assert shapes["b_enc"] == (3 * D_IN,) and shapes["b_dec"] == (D_IN,)
    if "threshold" in shapes:
        assert shapes["threshold"] == (3 * D_IN,)
    x = np.random.default_rng(0).normal(size=(30, D_IN)) * 4
    acts, out = _saelens_forward(folder, x)
    xt = torch.from_numpy(x).float()
    np.testing.assert_allclose(_saved_latents(sae, xt).detach().double().numpy(), acts, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        (sae(xt * SCALE).sae_out / SCALE).detach().double().numpy(), out, rtol=1e-4, atol=1e-4
    )


def test_sparsify_folder(tmp_path):
    d_in, d_sae, k = 8, 24, 3
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "encoder.weight": torch.randn(d_sae, d_in, generator=gen),
        "encoder.bias": torch.randn(d_sae, generator=gen),
        "W_dec": torch.randn(d_sae, d_in, generator=gen),
        "b_dec": torch.randn(d_in, generator=gen),
    }
    folder = tmp_path / "layers.5"
    folder.mkdir()
    save_file(tensors, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(
        json.dumps(
            {
                "activation": "topk",
                "expansion_factor": 3,
                "normalize_decoder": True,
                "num_latents": 0,
                "k": k,
                "multi_topk": False,
                "skip_connection": False,
                "transcode": False,
                "d_in": d_in,
            }
        )
    )
    loaded = load_sae(folder)
    assert loaded.format == "sparsify" and loaded.sae.architecture == "topk" and loaded.sae.config.k == k
    x = torch.randn(20, d_in, generator=gen)
    # sparsify: relu(encoder(x - b_dec)), top-k, then top_acts @ W_dec + b_dec
    pre = torch.relu((x - tensors["b_dec"]) @ tensors["encoder.weight"].T + tensors["encoder.bias"])
    top = pre.topk(k, dim=-1)
    expected = torch.zeros_like(pre).scatter_(-1, top.indices, top.values)
    torch.testing.assert_close(loaded.sae.encode(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded.sae(x).sae_out, expected @ tensors["W_dec"] + tensors["b_dec"])


@pytest.mark.parametrize("kind", ["npz", "safetensors", "file"])
def test_gemma_scope_params(tmp_path, kind):
    d_in, d_sae = 8, 16
    rng = np.random.default_rng(1)
    params = {
        "W_enc": rng.normal(size=(d_in, d_sae)),
        "W_dec": rng.normal(size=(d_sae, d_in)),
        "b_enc": rng.normal(size=d_sae),
        "b_dec": rng.normal(size=d_in),
        "threshold": rng.uniform(0, 1, d_sae),
    }
    params = {k: v.astype(np.float32) for k, v in params.items()}
    folder = tmp_path / "layer_20_width_16k_l0_medium"
    folder.mkdir()
    if kind == "safetensors":  # Gemma Scope 2 spells the weights in lower case
        save_file(
            {k.lower(): torch.from_numpy(v) for k, v in params.items()}, str(folder / "params.safetensors")
        )
        target = folder
    else:
        np.savez(folder / "params.npz", **params)
        target = folder / "params.npz" if kind == "file" else folder
    loaded = load_sae(target)
    assert loaded.format == "gemma_scope" and loaded.sae.architecture == "jumprelu"
    assert not loaded.sae.apply_b_dec_to_input
    x = rng.normal(size=(25, d_in)).astype(np.float32)
    pre = x @ params["W_enc"] + params["b_enc"]  # Gemma Scope does not subtract b_dec
    acts = np.maximum(pre, 0) * (pre > params["threshold"])
    got = loaded.sae.encode(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, acts, rtol=1e-5, atol=1e-5)
    assert (acts > 0).any() and (acts == 0).any()


def test_sha256_is_of_the_weights_file(tmp_path):
    folder = save_sae(_trained_like("topk"), tmp_path / "s")
    import hashlib

    assert (
        sha256_file(folder / "sae_weights.safetensors")
        == hashlib.sha256((folder / "sae_weights.safetensors").read_bytes()).hexdigest()
    )


def test_unloadable_folders(tmp_path):
    with pytest.raises(ModelLoadError, match=r"no SAE folder at '.*nowhere'"):
        load_sae(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"holds no SAE: expected cfg.json with sae_weights.safetensors"):
        load_sae(tmp_path / "empty")
    folder = save_sae(_trained_like("topk"), tmp_path / "damaged")
    (folder / "sae_weights.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelLoadError, match=r"cannot read SAE weights '.*sae_weights.safetensors'"):
        load_sae(folder)
    folder = save_sae(_trained_like("topk"), tmp_path / "gated")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "architecture": "gated"}))
    with pytest.raises(
        ModelLoadError, match=r"has architecture 'gated'; supported: \['jumprelu', 'standard', 'topk'\]"
    ):
        load_sae(folder)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "normalize_activations": "expected_average_only_in"}))
    with pytest.raises(
        ModelLoadError, match=r"expects normalize_activations='expected_average_only_in'; fold"
    ):
        load_sae(folder)
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"cfg.json' is unreadable or not JSON"):
        load_sae(folder)
    folder = tmp_path / "shapes"
    folder.mkdir()
    save_file(
        {
            "W_enc": torch.zeros(4, 8),
            "W_dec": torch.zeros(8, 5),
            "b_enc": torch.zeros(8),
            "b_dec": torch.zeros(4),
            "threshold": torch.zeros(8),
        },
        str(folder / "params.safetensors"),
    )
    with pytest.raises(
        ModelLoadError, match=r"W_dec of '.*params.safetensors' has shape \(8, 5\), expected \(8, 4\)"
    ):
        load_sae(folder)
    folder = save_sae(_trained_like("jumprelu"), tmp_path / "nan")
    weights = load_file(str(folder / "sae_weights.safetensors"))
    weights["W_dec"][3, 1] = float("nan")
    weights["threshold"][0] = float("inf")
    save_file(weights, str(folder / "sae_weights.safetensors"))
    with pytest.raises(ModelLoadError, match=r"hold NaN or infinite values in \['W_dec', 'threshold'\]"):
        load_sae(folder)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka_batchtopk", "relu", "jumprelu"])
def test_saelens_itself_loads_our_folders(tmp_path, arch):
    """SAELens 6.54 (the ``bench`` extra) loads the folder and computes what we compute."""
    sae_lens = pytest.importorskip("sae_lens")
    sae = _trained_like(arch, decoder_init_norm=0.3)
    folder = save_sae(sae, tmp_path / "sae", scale=SCALE, metadata={"hook_name": "blocks.0.hook_resid_post"})
    theirs = sae_lens.SAE.load_from_disk(str(folder), device="cpu").eval()
    x = torch.randn(30, D_IN) * 4
    with torch.no_grad():
        torch.testing.assert_close(theirs.encode(x), _saved_latents(sae, x), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(theirs(x), sae(x * SCALE).sae_out / SCALE, rtol=1e-4, atol=1e-4)
