"""Extraction in-process: stored values equal the model's, metadata, resume, subsets and guards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sae_store.extract.config import ExtractConfig
from sae_store.extract.run import extract_activations
from sae_store.extract.writer import Float16OverflowWarning, NonFiniteError
from sae_store.models.inputs import build_batch
from sae_store.models.loader import LoadedModel
from sae_store.roles import TokenRole
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.codecs import round_to_bf16

from .conftest import MakeStore
from .helpers import N_SAMPLES, arrays, assert_same_files

FAST = ExtractConfig(batch_size=3, progress=False)


def _alone(
    loaded: LoadedModel, image_path: Path, prompt: str
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """input_ids and output_hidden_states of one sample run alone."""
    with Image.open(image_path) as im:
        batch = build_batch(loaded.processor, [im.convert("RGB")], prompt)
    with torch.inference_mode():
        out = loaded.model(**batch, output_hidden_states=True)
    return batch["input_ids"][0], out.hidden_states


def test_stored_activations_equal_a_direct_run_of_each_sample_alone(
    make_store: MakeStore, loaded: LoadedModel, images_root: Path
) -> None:
    store = make_store("fp32")
    summary = extract_activations(store, loaded, FAST)
    assert summary.ok and summary.blocks_written == 6 and summary.samples == 2 * N_SAMPLES
    ds = arrays(store.path)
    norm = loaded.adapter.final_norm(loaded.model)
    n_layers = len(store.layout.layers)
    for j, lang in enumerate(store.layout.languages):
        prompt = store.attrs["prompts"][lang]
        for s in (0, 5, 9):  # first block, middle block, the partial last block
            ids, hidden = _alone(loaded, images_root / f"im{s:02d}.png", prompt)
            n = len(ids)
            assert ds[S.N_TOKENS][j, s] == n == store.attrs["tokens_per_language"][lang]
            np.testing.assert_array_equal(ds[S.INPUT_IDS][j, s, :n], ids.numpy())
            for layer in range(n_layers - 1):
                # float32 on CPU; batched vs alone differs only in summation order (tolerance 1e-5)
                np.testing.assert_allclose(
                    ds[S.ACTIVATIONS][layer, j, s, :n], hidden[layer + 1][0].numpy(), rtol=1e-5, atol=1e-5
                )
            # the last hidden state is after the final norm: apply it to the stored last layer
            with torch.inference_mode():
                normed = norm(torch.from_numpy(ds[S.ACTIVATIONS][n_layers - 1, j, s, :n]))
            np.testing.assert_allclose(normed.numpy(), hidden[n_layers][0].numpy(), rtol=1e-5, atol=1e-5)


def test_tokens_are_left_aligned_with_roles_and_padding(make_store: MakeStore, loaded: LoadedModel) -> None:
    store = make_store("fp32")
    extract_activations(store, loaded, FAST)
    ds = arrays(store.path)
    T = store.layout.max_tokens
    image_id = loaded.adapter.image_token_id
    for j, lang in enumerate(store.layout.languages):
        n = store.attrs["tokens_per_language"][lang]
        roles, ids = ds[S.TOKEN_ROLE][j], ds[S.INPUT_IDS][j]
        assert (roles[:, :n] != TokenRole.PAD).all() and (roles[:, n:] == TokenRole.PAD).all()
        assert (ids[:, n:] == 0).all()
        assert (
            np.isnan(ds[S.ACTIVATIONS][:, j, :, n:]).all()
            and not np.isnan(ds[S.ACTIVATIONS][:, j, :, :n]).any()
        )
        # first token is <bos>; exactly the image soft tokens have the image role
        assert (ids[:, 0] == loaded.processor.tokenizer.bos_token_id).all()
        assert (roles[:, 0] == TokenRole.SPECIAL).all()
        assert ((roles == TokenRole.IMAGE) == (ids == image_id)).all()
        assert ((roles == TokenRole.IMAGE).sum(axis=1) == store.attrs["image_tokens"]).all()
        assert ((roles == TokenRole.TEXT).sum(axis=1) > 3).all()
    # the two prompts differ in length, so exactly one language is padded at the end
    lengths = sorted(store.attrs["tokens_per_language"].values())
    assert lengths[0] < lengths[1] == T


def test_bf16_store_holds_the_fp32_values_rounded(
    make_store: MakeStore, loaded: LoadedModel, reference: Path
) -> None:
    store = make_store("fp32")
    extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    fp32 = arrays(store.path)[S.ACTIVATIONS]
    bf16 = arrays(reference)[S.ACTIVATIONS]
    np.testing.assert_array_equal(bf16, round_to_bf16(fp32))  # same batches: bit for bit
    finite = np.isfinite(fp32)
    assert (bf16.view(np.uint32)[finite] & 0xFFFF == 0).all()


def test_flags_and_statistics(reference: Path) -> None:
    ds = arrays(reference)
    assert ds[S.COMPLETE].all()
    assert (ds[S.NONFINITE] == 0).all()
    acts = ds[S.ACTIVATIONS]
    np.testing.assert_array_equal(ds[S.MAX_ABS], np.nanmax(np.abs(acts), axis=(3, 4)))
    assert (ds[S.EXTRACT_ERROR] == "").all()


def test_rerun_skips_complete_blocks_and_resumes_partial_work(
    make_store: MakeStore, loaded: LoadedModel, reference: Path
) -> None:
    store = make_store()
    first = extract_activations(
        store, loaded, ExtractConfig(sample_range=(0, 4), batch_size=2, progress=False)
    )
    assert (first.blocks_planned, first.blocks_written) == (2, 2)
    part = extract_activations(
        store, loaded, ExtractConfig(layers=(0, 2), languages=("ar",), batch_size=2, progress=False)
    )
    assert (part.blocks_planned, part.blocks_skipped, part.blocks_written) == (3, 1, 2)
    flags = store.read_flags()
    assert flags[[0, 2], 1].all() and not flags[[1, 3], 1, 4:].any() and not flags[:, 0, 4:].any()
    rest = extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    assert (rest.blocks_skipped, rest.blocks_written) == (2, 4)
    again = extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    assert again.blocks_written == 0 and again.blocks_skipped == 6
    assert_same_files(store.path, reference)


def test_failed_image_is_recorded_not_zero_filled_and_the_rest_completes(
    make_store: MakeStore, loaded: LoadedModel, tmp_path: Path, images_root: Path, reference: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for f in images_root.iterdir():
        (images / f.name).write_bytes(f.read_bytes())
    (images / "im05.png").write_bytes(b"not a png")
    store = make_store()
    summary = extract_activations(
        store, loaded, ExtractConfig(batch_size=2, progress=False), images_dir=images
    )
    assert not summary.ok
    assert [(sid, lang) for sid, lang, _ in summary.failed] == [("s05", "en"), ("s05", "ar")]
    assert "cannot load image" in summary.failed[0][2] and "im05.png" in summary.failed[0][2]
    assert "1 sample(s) FAILED" in summary.render()
    ds, ref = arrays(store.path), arrays(reference)
    assert (ds[S.EXTRACT_ERROR][:, 5] != "").all() and (np.delete(ds[S.EXTRACT_ERROR], 5, axis=1) == "").all()
    assert not ds[S.COMPLETE][:, :, 5].any() and np.delete(ds[S.COMPLETE], 5, axis=2).all()
    assert np.isnan(ds[S.ACTIVATIONS][:, :, 5]).all() and (ds[S.NONFINITE][:, :, 5] == -1).all()
    assert (ds[S.N_TOKENS][:, 5] == 0).all() and (ds[S.TOKEN_ROLE][:, 5] == TokenRole.PAD).all()
    # the other samples of the block are unaffected (batches of 2 from s04, s06, s07: 1e-5 of the reference)
    np.testing.assert_allclose(ds[S.ACTIVATIONS][:, :, 4], ref[S.ACTIVATIONS][:, :, 4], rtol=2**-7, atol=1e-6)
    np.testing.assert_array_equal(ds[S.ACTIVATIONS][:, :, :4], ref[S.ACTIVATIONS][:, :, :4])
    # once the image is fixed, a rerun redoes that block only and clears the error
    (images / "im05.png").write_bytes((images_root / "im05.png").read_bytes())
    again = extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False), images_dir=images)
    assert again.ok and again.blocks_written == 2
    assert_same_files(store.path, reference)


class _Hooked:
    """Temporarily edit one decoder layer's output of the shared model (removed on exit)."""

    def __init__(self, loaded: LoadedModel, layer: int, edit: object) -> None:
        self.module = loaded.adapter.decoder_layers(loaded.model)[layer]
        self.edit = edit

    def __enter__(self) -> None:
        def hook(_m: object, _a: object, out: torch.Tensor) -> torch.Tensor:
            return self.edit(out)  # type: ignore[operator]

        self.handle = self.module.register_forward_hook(hook)

    def __exit__(self, *_: object) -> None:
        self.handle.remove()


def _poison(out: torch.Tensor) -> torch.Tensor:
    out = out.clone()
    out[:, 3, 0] = float("inf")
    return out


def test_nonfinite_stops_the_run_without_flagging_the_block(
    make_store: MakeStore, loaded: LoadedModel
) -> None:
    store = make_store()
    with (
        _Hooked(loaded, 1, _poison),
        pytest.raises(
            NonFiniteError, match=r"layer 1, language 'en': 4 NaN/inf .* nothing of this block was written"
        ),
    ):
        extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    assert not store.read_flags().any()
    shards = store.path / S.ACTIVATIONS / "c"
    assert not [f for f in shards.rglob("*") if f.is_file()]  # no shard file, not even a temporary one


def test_nonfinite_record_keeps_and_counts_the_values(make_store: MakeStore, loaded: LoadedModel) -> None:
    store = make_store()
    with _Hooked(loaded, 1, _poison):
        summary = extract_activations(
            store, loaded, ExtractConfig(batch_size=2, on_nonfinite="record", progress=False)
        )
    ds = arrays(store.path)
    assert ds[S.COMPLETE].all()
    # one inf per sample at layer 1; it then spreads through attention into the later layers
    assert (
        (ds[S.NONFINITE][0] == 0).all()
        and (ds[S.NONFINITE][1] == 1).all()
        and (ds[S.NONFINITE][2:] > 1).all()
    )
    assert np.isposinf(ds[S.ACTIVATIONS][1, :, :, 3, 0]).all()
    assert summary.nonfinite == int(ds[S.NONFINITE].sum())
    assert np.isfinite(ds[S.MAX_ABS][:2]).all()  # later layers are all NaN: no finite value, NaN


def test_float16_overflow_warning_names_the_layer(make_store: MakeStore, loaded: LoadedModel) -> None:
    store = make_store()
    with _Hooked(loaded, 2, lambda out: out * 1e6), pytest.warns(Float16OverflowWarning) as caught:
        summary = extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    # the scaled stream flows on into layer 3; one warning per layer
    assert [str(w.message).split(" has")[0] for w in caught] == ["layer 2", "layer 3"]
    assert "never cast this store's activations to float16" in str(caught[0].message)
    assert set(summary.float16_overflow) == {2, 3}
    max_abs = arrays(store.path)[S.MAX_ABS]
    assert np.nanmax(max_abs[2]) > 65504
    # each warning reports the run's maximum of its layer, not the first block's
    for w, row in zip(caught, (2, 3), strict=True):
        assert f"|x| = {np.nanmax(max_abs[row]):.4g}," in str(w.message)
    assert np.nanmax(max_abs[2, :, :4]) != np.nanmax(max_abs[2])


def test_more_pending_blocks_give_the_same_store(
    make_store: MakeStore, loaded: LoadedModel, reference: Path
) -> None:
    store = make_store()
    extract_activations(store, loaded, ExtractConfig(batch_size=2, pending_blocks=3, progress=False))
    assert_same_files(store.path, reference)


@pytest.mark.parametrize("threads", [1, 3])
def test_writer_threads_give_the_same_store(
    make_store: MakeStore, loaded: LoadedModel, reference: Path, threads: int
) -> None:
    store = make_store()
    extract_activations(store, loaded, ExtractConfig(batch_size=2, writer_threads=threads, progress=False))
    assert_same_files(store.path, reference)


def test_partial_files_of_a_killed_writer_are_removed(make_store: MakeStore, loaded: LoadedModel) -> None:
    store = make_store()
    leftover = store.path / S.ACTIVATIONS / "c" / "0" / "0" / "1" / "0" / "0.0123abcd.partial"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a shard")
    extract_activations(store, loaded, ExtractConfig(batch_size=2, progress=False))
    assert not leftover.exists()
    assert open_store(store.path).read_flags().all()


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bfloat16_extraction_agrees_with_cpu_float32(
    make_store: MakeStore, tiny_model_dir: Path, reference: Path
) -> None:
    from sae_store.models.loader import load_model

    gpu = load_model(tiny_model_dir, device="cuda", dtype="auto")
    assert gpu.dtype == torch.bfloat16
    store = make_store()
    assert extract_activations(store, gpu, ExtractConfig(batch_size=4, progress=False)).ok
    ds, ref = arrays(store.path), arrays(reference)
    for name in (S.INPUT_IDS, S.TOKEN_ROLE, S.N_TOKENS, S.COMPLETE):
        np.testing.assert_array_equal(ds[name], ref[name])
    got, want = ds[S.ACTIVATIONS], ref[S.ACTIVATIONS]
    assert (np.isnan(got) == np.isnan(want)).all()
    real = ~np.isnan(want)
    # bf16 compute through 4 layers: a few bf16 ulps (2^-8 relative) of error, not more
    rel = np.linalg.norm(got[real] - want[real]) / np.linalg.norm(want[real])
    assert rel < 0.03, rel
    assert (got.view(np.uint32)[real] & 0xFFFF == 0).all()  # bf16 values, stored exactly
