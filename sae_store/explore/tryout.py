"""The feature page's test box: run the model and the layer's SAE on an image and a caption of one's
own (or a stored sample's image) and see where the feature fires.

The model is loaded on the first run and kept for every later one (one per explorer, shared by all
pages); runs take turns, as the forward hooks they place are the model's. An image is sent from the
browser only when it is under :data:`MAX_UPLOAD_BYTES` (checked there, and again here), so a huge
file is refused before it is sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn
import param
import torch
from panel.custom import JSComponent
from PIL import Image, UnidentifiedImageError

from sae_store.analyze import grid_side
from sae_store.data import load_images, square
from sae_store.errors import SaeStoreError
from sae_store.explore.context import IMAGE_SIZE, STYLE, activation_html, image_map
from sae_store.explore.data import ExploreData, SampleTokens
from sae_store.explore.layout import html_pane
from sae_store.extract.hooks import capture_layers
from sae_store.models import LoadedModel, ModelRunConfig, special_token_ids, token_roles
from sae_store.roles import TokenRole
from sae_store.store.schema import FEATURE_MAX

#: Largest image file the box takes.
MAX_UPLOAD_BYTES = 10 * 2**20
#: Largest image the box decodes, in pixels (a bigger one is refused before it is decoded).
MAX_UPLOAD_PIXELS = 50_000_000
_FORMATS = "choose a PNG, JPEG, WebP, GIF, BMP or TIFF file"
#: Longest caption, in tokens.
MAX_CAPTION_TOKENS = 256


class UploadError(SaeStoreError):
    """An uploaded file the box does not take: too large, or not an image."""


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def too_large(name: str, size: int) -> UploadError:
    """The refusal of a file of ``size`` bytes (the browser checks first and sends only its size)."""
    return UploadError(
        f"{name!r} is {_mb(size)}; the test box takes image files up to {_mb(MAX_UPLOAD_BYTES)}: "
        "save a smaller copy (the model sees it squared to its own image size anyway)"
    )


def _too_many_pixels(name: str, size: str) -> UploadError:
    return UploadError(
        f"{name!r} {size}; the test box takes images up to {MAX_UPLOAD_PIXELS / 1e6:.0f} megapixels: "
        "save a smaller copy"
    )


def read_upload(content: bytes, name: str) -> Image.Image:
    """The uploaded file as an RGB image; refused if larger than :data:`MAX_UPLOAD_BYTES` or
    :data:`MAX_UPLOAD_PIXELS`, or if Pillow cannot read it as an image."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise too_large(name, len(content))
    try:
        im = Image.open(io.BytesIO(content))  # reads the header only
    except UnidentifiedImageError:
        raise UploadError(f"{name!r} is not an image: {_FORMATS}") from None
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours
        raise _too_many_pixels(name, "has more pixels than can be decoded safely") from None
    if im.width * im.height > MAX_UPLOAD_PIXELS:
        raise _too_many_pixels(name, f"is {im.width} x {im.height} pixels")
    try:
        return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise UploadError(
            f"{name!r} cannot be read as an image ({type(e).__name__}: {e}): {_FORMATS}"
        ) from None


class LiveModel:
    """The store's model, loaded on first use and shared by every page of the explorer.

    Parameters
    ----------
    store_path
        The store, whose recorded model folder is the default and whose model identity is checked.
    model
        Another folder holding the same model (the store's was moved); None for the recorded one.
    config
        Device and precision of the runs.
    """

    def __init__(self, store_path: str | Path, model: str | Path | None, config: ModelRunConfig) -> None:
        self.store_path, self.model, self.config = Path(store_path), model, config
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    def problem(self, data: ExploreData) -> str | None:
        """Why the model cannot be loaded here (no such folder), or None; ``data`` is the store open."""
        if self.model is not None:
            if Path(self.model).is_dir():
                return None
            return (
                f"The test box runs the model folder {str(self.model)!r} given with --model, which is not a "
                "folder on this machine: pass the folder holding the store's model"
            )
        recorded = data.store.model_folder
        if not recorded:
            return (
                "The test box runs the store's model, but the store records no model folder: restart "
                "the explorer with --model DIR"
            )
        if not Path(recorded).is_dir():
            return (
                f"The test box runs the store's model, recorded as {str(recorded)!r}, which is not on this "
                "machine: restart the explorer with --model DIR (a folder holding the same model)"
            )
        return None

    def run(self, layer: int, image: Image.Image, prompt: str, caption: str) -> SampleTokens:
        """The roles and ids of the tokens of ``image`` with ``prompt`` and ``caption`` as the model's
        answer, and the residual stream after ``layer`` at each token (``acts``, (T, d) float32)."""
        with self._lock:  # one run at a time: its hooks are on the shared model
            loaded = self._get()
            return _forward(loaded, layer, image, prompt, caption)

    def _get(self) -> LoadedModel:
        if self._loaded is None:
            from sae_store.intervene.run import load_store_model
            from sae_store.store import open_store

            self._loaded = load_store_model(open_store(self.store_path), self.model, self.config)
        return self._loaded


@torch.inference_mode()
def _forward(loaded: LoadedModel, layer: int, image: Image.Image, prompt: str, caption: str) -> SampleTokens:
    from sae_store.intervene.batches import prompt_batch, teacher_forced

    tokenizer = loaded.processor.tokenizer
    caption_ids = tokenizer.encode(caption, add_special_tokens=False) if caption.strip() else []
    if len(caption_ids) > MAX_CAPTION_TOKENS:
        raise SaeStoreError(
            f"the caption is {len(caption_ids)} tokens; the test box takes up to {MAX_CAPTION_TOKENS}: "
            "shorten it"
        )
    inputs = prompt_batch(loaded, [image], prompt)
    if caption_ids:
        inputs = teacher_forced(loaded, inputs, [caption_ids]).inputs
    roles = token_roles(
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs["token_type_ids"],
        special_token_ids(tokenizer),
        image_token_id=loaded.adapter.image_token_id,
    )
    hidden: list[np.ndarray] = []
    capture_layers(
        loaded.model,
        loaded.adapter,
        [layer],
        inputs,
        lambda _k, h: hidden.append(h[0].to("cpu", torch.float32).numpy()),
    )
    return SampleTokens(
        roles=roles[0].cpu().numpy().astype(np.int8),
        ids=inputs["input_ids"][0].cpu().numpy(),
        acts=hidden[0],
    )


def feature_tokens(
    data: ExploreData,
    live: LiveModel,
    layer: int,
    feature: int,
    language: str,
    image: Image.Image,
    caption: str,
) -> SampleTokens:
    """``feature``'s activation at each token of ``image`` with ``language``'s prompt and ``caption``."""
    run = live.run(layer, image, str(data.store.attrs["prompts"][language]), caption)
    assert run.acts is not None
    acts = data.saes.feature_at_tokens(layer, run.acts, feature) * (run.roles != TokenRole.PAD)
    return SampleTokens(roles=run.roles, ids=run.ids, acts=acts)


def result_html(
    data: ExploreData, t: SampleTokens, image: Image.Image, *, what: str, layer: int, feature: int,
    language: str,
) -> str:  # fmt: skip
    """The run's image with the feature over it, its crops and its highlighted tokens, and how its
    largest activation compares with the feature's largest in the store."""
    assert t.acts is not None
    top = float(t.acts.max(initial=0.0))
    grid = image_map(data, t.acts, t.roles)
    where = ""
    if top > 0:
        pos = int(np.argmax(t.acts))
        role = TokenRole(int(t.roles[pos])).name.lower()
        if role == "image" and grid is not None:
            r, c = divmod(int(np.argmax(grid)), grid_side(data.image_tokens))
            where = f" on image patch ({r}, {c})"
        else:
            token = data.decode_token(int(t.ids[pos])) if data.decode_token else f"<{int(t.ids[pos])}>"
            where = f" on the {role} token {html.escape(repr(token))}"
    stored = data.feature_column(FEATURE_MAX, layer, language, feature) if data.features is not None else None
    compare = ""
    if stored is not None and np.isfinite(stored).any():
        compare = f"; its largest on the stored {language} samples is {np.nanmax(stored):.3f}"
    said = f"reaches {top:.3f}{where}" if top > 0 else "is not active on any token"
    head = f"<b>{html.escape(what)}</b>: feature {feature} of layer {layer} {said}{compare}"
    return activation_html(
        data, head, t, square(image, IMAGE_SIZE), grid, language=language, vmax=top or 1.0, alt=what
    )


class ImageUpload(JSComponent):
    """A file chooser that sends an image file to the server only when it is under ``max_bytes``;
    a larger one is refused in the browser (its name and size are sent, not its bytes). Beside it, the
    file's state: ``reading NAME...``, then ``ready: NAME (SIZE)`` or ``refused: NAME (SIZE)``."""

    data = param.String(default="", doc="the chosen file, base64")
    filename = param.String(default="")
    refused_size = param.Integer(default=0, doc="size in bytes of a file refused for its size")
    pending = param.Boolean(default=False, doc="a chosen file is still being read and sent")
    max_bytes = param.Integer(default=MAX_UPLOAD_BYTES)

    _esm = """
    export function render({ model, el }) {
      const input = document.createElement('input');
      input.type = 'file';
      input.accept = 'image/*';
      const status = document.createElement('span');
      status.className = 'upload-status';
      status.style.marginLeft = '6px';
      status.style.whiteSpace = 'nowrap';
      const mb = (n) => (n < 1048576 ? `${Math.ceil(n / 1024)} KB` : `${(n / 1048576).toFixed(1)} MB`);
      input.addEventListener('change', () => {
        const file = input.files[0];
        if (!file) return;
        model.pending = true;
        status.textContent = `reading ${file.name}...`;
        if (file.size > model.max_bytes) {
          model.data = '';
          model.refused_size = file.size;
          model.filename = file.name;
          model.pending = false;
          status.textContent = `refused: ${file.name} (${mb(file.size)})`;
          return;
        }
        const reader = new FileReader();
        reader.onload = () => {
          model.refused_size = 0;
          model.data = String(reader.result).split(',')[1] || '';
          model.filename = file.name;
          model.pending = false;
          status.textContent = `ready: ${file.name} (${mb(file.size)})`;
        };
        reader.onerror = () => {
          model.pending = false;
          status.textContent = `cannot read ${file.name}`;
        };
        reader.readAsDataURL(file);
      });
      el.append(input, status);
    }
    """

    def image(self) -> Image.Image | None:
        """The chosen image (None before a file is chosen); refused if too large or not an image."""
        if self.pending:
            raise UploadError(f"{self.filename or 'the image'!r} is still being sent: run again in a moment")
        if self.refused_size:
            raise too_large(self.filename, self.refused_size)
        if not self.filename:
            return None
        try:
            content = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise UploadError(f"{self.filename!r} arrived damaged; choose it again") from None
        return read_upload(content, self.filename)


STORED, UPLOADED = "a stored sample's image", "an uploaded image"
#: What the result shows while the model runs.
RUNNING = "running the model (the first run loads it)..."


def _result(body: str) -> str:
    return f'{STYLE}<div class="tryout">{body}</div>'


def tryout_panel(data: ExploreData, live: LiveModel, layer: int, feature: int, language: str) -> list[Any]:
    """The "Test this feature" section: the image (a stored sample's, or one uploaded), an optional
    caption run as the model's answer, and the feature's activation over both once run."""
    heading = pn.pane.Markdown(f"### Test this feature on your own input ({language})")
    if not data.saes.has(layer):
        return [
            heading,
            html_pane(f"The test box runs the layer's SAE, and there is no SAE for layer {layer}."),
        ]
    problem = live.problem(data)
    if problem:
        return [heading, html_pane(problem)]
    source = pn.widgets.RadioButtonGroup(options=[STORED, UPLOADED], value=STORED, color="light")
    sample = pn.widgets.AutocompleteInput(
        label="stored sample",
        options=[str(s) for s in data.labels.sample[: data.n_samples]],
        value=str(data.labels.sample[0]),
        case_sensitive=False,
        search_strategy="includes",
        min_characters=1,
        width=220,
    )
    upload = ImageUpload(width=440, height=40)
    caption = pn.widgets.TextAreaInput(
        label="caption, run as the model's answer (optional)",
        placeholder="e.g. A man with a beard stands in a field.",
        max_length=2000,
        height=80,
        sizing_mode="stretch_width",
    )
    run = pn.widgets.Button(label="Run the model", color="primary", width=160)
    out = html_pane("", sizing_mode="stretch_width")
    upload.param.watch(lambda _e: setattr(source, "value", UPLOADED), ["filename"])

    def compute() -> str:
        if source.value == UPLOADED:
            image = upload.image()
            if image is None:
                raise UploadError(
                    "no image uploaded yet: choose an image file, or test a stored sample's image"
                )
            what = f"uploaded {upload.filename}"
        else:
            i = data.sample_index(str(sample.value))
            if data.images_dir is None:
                raise SaeStoreError("the store records no images folder; upload an image instead")
            (image,), errors = load_images([data.images_dir / data.labels.image[i]])
            if image is None:
                raise SaeStoreError(errors[0])
            what = f"sample {sample.value}"
        t = feature_tokens(data, live, layer, feature, language, image, str(caption.value_input or ""))
        return result_html(data, t, image, what=what, layer=layer, feature=feature, language=language)

    async def on_run(_event: Any) -> None:
        run.disabled = True
        out.object = _result(f"<i>{RUNNING}</i>")
        try:
            shown = _result(await asyncio.to_thread(compute))
        except SaeStoreError as e:
            shown = _result(f'<div class="missing"><b>Cannot run:</b> {html.escape(str(e))}</div>')
        finally:
            run.disabled = False  # before the result: whoever reads it may run again at once
        out.object = shown

    run.on_click(on_run)
    controls = pn.Row(source, sample, upload, sizing_mode="stretch_width")
    return [heading, controls, caption, run, out]
