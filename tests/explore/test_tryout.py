"""The feature page's test box: the model and the SAE run on a stored sample's image or an upload."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sae_store.data import load_images
from sae_store.errors import SaeStoreError
from sae_store.explore.data import ExploreData
from sae_store.explore.tryout import (
    MAX_CAPTION_TOKENS,
    MAX_UPLOAD_BYTES,
    ImageUpload,
    LiveModel,
    feature_tokens,
    read_upload,
    result_html,
)
from sae_store.models.config import ModelRunConfig
from sae_store.roles import TokenRole
from sae_store.store import ActivationStore

CPU = ModelRunConfig(device="cpu", dtype="fp32")


def most_active(data: ExploreData, layer: int, language: str = "en") -> int:
    """The feature of ``layer`` with the largest activation over the stored samples."""
    assert data.features is not None
    return int(
        np.argmax(data.features["feature_max"].sel(layer=layer, language=language).max("sample").values)
    )


def sample_image(data: ExploreData, i: int) -> Image.Image:
    assert data.images_dir is not None
    (image,), _ = load_images([data.images_dir / data.labels.image[i]])
    assert image is not None
    return image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def live(tiny_store: ActivationStore) -> LiveModel:
    return LiveModel(tiny_store.path, None, CPU)


@pytest.mark.parametrize("language", ["en", "ar"])
def test_a_stored_sample_gives_its_stored_activations_and_a_caption_leaves_the_prompt_as_it_was(
    tiny_store: ActivationStore, live: LiveModel, language: str
) -> None:
    data = ExploreData(tiny_store.path)
    layer = data.layers[-1]
    feature = most_active(data, layer, language)
    stored = data.tokens(language, 3, layer=layer, feature=feature)
    assert stored.acts is not None
    n = int((stored.roles != TokenRole.PAD).sum())

    run = feature_tokens(data, live, layer, feature, language, sample_image(data, 3), "")
    assert run.acts is not None
    np.testing.assert_array_equal(run.ids, stored.ids[:n])
    np.testing.assert_array_equal(run.roles, stored.roles[:n])
    np.testing.assert_allclose(run.acts, stored.acts[:n], rtol=0, atol=1e-5)
    assert run.acts.max() > 0

    caption = "A man with a beard stands in a field." if language == "en" else "رجل ذو لحية يقف في حقل."
    loaded = live._get()
    caption_ids = loaded.processor.tokenizer.encode(caption, add_special_tokens=False)
    with_caption = feature_tokens(data, live, layer, feature, language, sample_image(data, 3), caption)
    assert with_caption.acts is not None
    np.testing.assert_array_equal(with_caption.ids, [*stored.ids[:n], *caption_ids])
    assert set(with_caption.roles[n:].tolist()) == {int(TokenRole.TEXT)}
    # the model attends backwards only: the caption after the prompt leaves the prompt's activations
    np.testing.assert_allclose(with_caption.acts[:n], run.acts, rtol=0, atol=1e-5)
    assert live._get() is loaded  # loaded once, on the first run


def test_an_upload_runs_as_a_stored_image_does_and_its_result_shows_where_the_feature_fires(
    tiny_store: ActivationStore, live: LiveModel
) -> None:
    data = ExploreData(tiny_store.path)
    layer = data.layers[-1]
    feature = most_active(data, layer)
    upload = ImageUpload(filename="mine.png", data=base64.b64encode(png(sample_image(data, 5))).decode())
    image = upload.image()
    assert image is not None
    run = feature_tokens(data, live, layer, feature, "en", image, "")
    stored = data.tokens("en", 5, layer=layer, feature=feature)
    assert run.acts is not None and stored.acts is not None
    np.testing.assert_allclose(run.acts, stored.acts[: run.acts.size], rtol=0, atol=1e-5)

    page = result_html(
        data, run, image, what="uploaded mine.png", layer=layer, feature=feature, language="en"
    )
    top = float(run.acts.max())
    stored_max = float(np.nanmax(data.feature_column("feature_max", layer, "en", feature)))
    assert f"<b>uploaded mine.png</b>: feature {feature} of layer {layer} reaches {top:.3f}" in page
    assert f"its largest on the stored en samples is {stored_max:.3f}" in page
    assert page.count('class="tok"') == int((run.roles != TokenRole.IMAGE).sum())
    assert "data:image/png;base64," in page  # the image with the feature drawn over it


def test_uploads_too_large_or_not_images_are_refused_with_the_limit(tmp_path: Path) -> None:
    with pytest.raises(SaeStoreError) as e:
        read_upload(b"\0" * (MAX_UPLOAD_BYTES + 1), "big.jpg")
    assert str(e.value) == (
        "'big.jpg' is 10.0 MB; the test box takes image files up to 10.0 MB: save a smaller copy (the model "
        "sees it squared to its own image size anyway)"
    )
    refused = ImageUpload(filename="huge.tif", refused_size=300 * 2**20)  # refused by the browser, unsent
    with pytest.raises(
        SaeStoreError, match=r"^'huge.tif' is 300.0 MB; the test box takes image files up to 10.0 MB"
    ):
        refused.image()
    with pytest.raises(SaeStoreError) as e:
        read_upload(b"just some notes", "notes.txt")
    assert str(e.value) == "'notes.txt' is not an image: choose a PNG, JPEG, WebP, GIF, BMP or TIFF file"
    wide = png(Image.new("1", (8000, 8000)))  # small as a file, 64 megapixels decoded
    assert len(wide) < MAX_UPLOAD_BYTES
    with pytest.raises(SaeStoreError) as e:
        read_upload(wide, "wide.png")
    assert str(e.value) == (
        "'wide.png' is 8000 x 8000 pixels; the test box takes images up to 50 megapixels: save a smaller copy"
    )
    bomb = png(Image.new("1", (15_000, 15_000)))  # past Pillow's own limit: refused before decoding
    with pytest.raises(SaeStoreError) as e:
        read_upload(bomb, "bomb.png")
    assert str(e.value).startswith(
        "'bomb.png' has more pixels than can be decoded safely; the test box takes images up to 50 "
    )
    cut = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))[:400]
    with pytest.raises(SaeStoreError, match=r"^'cut.png' cannot be read as an image \(OSError: .*truncated"):
        read_upload(cut, "cut.png")
    assert ImageUpload().image() is None  # nothing chosen yet
    with pytest.raises(SaeStoreError, match=r"^'x.png' is still being sent: run again in a moment$"):
        ImageUpload(filename="x.png", pending=True).image()
    with pytest.raises(SaeStoreError, match=r"^'x.png' arrived damaged; choose it again$"):
        ImageUpload(filename="x.png", data="not base64!").image()


def test_a_long_caption_another_model_and_a_missing_folder_are_refused(
    tiny_store: ActivationStore, live: LiveModel, tmp_path: Path
) -> None:
    data = ExploreData(tiny_store.path)
    image = sample_image(data, 0)
    with pytest.raises(SaeStoreError, match=rf"the test box takes up to {MAX_CAPTION_TOKENS}: shorten it$"):
        feature_tokens(data, live, data.layers[0], 0, "en", image, "a man " * 400)

    from sae_store.models.tiny import build_tiny_gemma3

    other = build_tiny_gemma3(tmp_path / "other", seed=1)
    with pytest.raises(SaeStoreError, match=r"is not the model store .* was made with"):
        feature_tokens(data, LiveModel(tiny_store.path, other, CPU), data.layers[0], 0, "en", image, "")

    assert live.problem(data) is None
    gone = LiveModel(tiny_store.path, tmp_path / "moved", CPU).problem(data)
    assert gone == (
        f"The test box runs the model folder {str(tmp_path / 'moved')!r} given with --model, which is not a "
        "folder on this machine: pass the folder holding the store's model"
    )


def test_the_sae_cache_serves_threads_at_once(tiny_store: ActivationStore) -> None:
    """Pages are built on the server's thread while test-box runs go on others; with room for one SAE,
    every call still gets its own layer's SAE."""
    from concurrent.futures import ThreadPoolExecutor

    from sae_store.explore.saes import SaeCache

    data = ExploreData(tiny_store.path)
    x = np.random.default_rng(0).normal(size=(6, tiny_store.layout.hidden_size)).astype(np.float32)
    expected = {layer: data.saes.feature_at_tokens(layer, x, 5) for layer in data.layers}
    cache = SaeCache(data.saes.folders, max_loaded=1)
    calls = [data.layers[i % len(data.layers)] for i in range(120)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda layer: (layer, cache.feature_at_tokens(layer, x, 5)), calls))
    for layer, values in got:
        np.testing.assert_array_equal(values, expected[layer])
