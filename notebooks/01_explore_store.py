# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring an activation store
#
# An sae-store store is one Zarr group that `xarray` opens lazily: nothing below reads more than
# the values it shows. This notebook opens a store, selects one layer, language and sample, looks
# at its tokens, draws an activation map over the image tokens, and checks how much disk the store
# uses and how complete it is.
#
# Set the store path in the next cell, or with the `SAE_STORE` environment variable. By default it
# is the store of `make demo` (`demo-output/store.zarr`), found from the repository root or from
# this `notebooks/` folder, where Jupyter starts the kernel.

# %% tags=["parameters"]
import os
from pathlib import Path

DEMO_STORE = next(
    (str(d / "demo-output" / "store.zarr") for d in (Path.cwd(), *Path.cwd().parents)
     if (d / "demo-output" / "store.zarr").is_dir()),
    "demo-output/store.zarr",
)
STORE = os.environ.get("SAE_STORE", DEMO_STORE)

# %%
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from IPython.display import HTML, display
from PIL import Image

from sae_store.report.bidi import dir_attr, inline_html
from sae_store.roles import TokenRole
from sae_store.store import completion, open_store, store_usage
from sae_store.store.usage import render_usage


def paragraphs(*texts: str) -> HTML:
    """Texts as HTML paragraphs, Arabic ones laid out right to left (dir="rtl"), as in the report."""
    return HTML("".join(f"<p{dir_attr(t)}>{inline_html(t)}</p>" for t in texts))


ds = xr.open_zarr(STORE)
# the prompts are shown below, each in its direction; "config" repeats them (read it as ds.attrs["config"])
shown = ds.copy()
shown.attrs = {k: v for k, v in ds.attrs.items() if k not in ("prompts", "config")}
shown

# %% [markdown]
# The dimensions are `layer`, `language`, `sample`, `token` and `hidden`; per-sample metadata
# (`image`, `gender`) are coordinates. For reductions over many samples,
# `open_store(STORE).dataset()` opens the same data with one dask chunk per shard block, which is
# much faster than one chunk per sample.

# %%
store = open_store(STORE)
print("layers:", list(store.layout.layers), "languages:", list(store.layout.languages))
print("prompts:")
display(paragraphs(*store.attrs["prompts"].values()))
print("samples:", store.layout.n_samples, "tokens:", store.layout.max_tokens, "hidden:", store.layout.hidden_size)
print(ds.gender.to_series().value_counts().to_string())

# %% [markdown]
# ## One layer, language and sample
# Pick a layer whose activations are written (the store's `complete` flags say which), and show the
# sample's reference captions in that language (Arabic right to left, as in the report).

# %%
done = ds.complete.any("sample").compute()
written = [(int(la), str(lg)) for la in done.layer.values for lg in done.language.values if done.sel(layer=la, language=lg)]
if not written:
    raise SystemExit("no activations written yet: run `sae-store extract STORE --model MODEL_DIR`")
layer, language = written[len(written) // 2]
flags = ds.complete.sel(layer=layer, language=language).values
sample = str(ds.sample.values[np.flatnonzero(flags)[0]])
x = ds.activations.sel(layer=layer, language=language, sample=sample)
print(f"layer {layer}, {language}, sample {sample} ({ds.gender.sel(sample=sample).values!s})")
display(paragraphs(*str(ds.caption.sel(sample=sample, language=language).values).splitlines()))
x

# %% [markdown]
# ## Token roles
# `token_role` says what each position holds: padding, special tokens, text (the prompt) or image
# tokens. Tokens are left-aligned, padding last.

# %%
roles = ds.token_role.sel(language=language, sample=sample).values
names = ds.token_role.attrs["flag_meanings"].split()
for code, name in enumerate(names):
    print(f"{name.removesuffix('_token'):<8} {(roles == code).sum():>4} tokens")
print("real tokens:", int(ds.n_tokens.sel(language=language, sample=sample)))

# %% [markdown]
# ## An activation map
# The norm of the residual stream at every token, and over the image tokens laid out as their
# square grid (16 x 16 for Gemma 3) on top of the image.

# %%
norm = np.sqrt((x.astype("float64") ** 2).sum("hidden")).compute().values
image_tokens = roles == TokenRole.IMAGE
side = int(round(np.sqrt(image_tokens.sum())))
grid = norm[image_tokens][: side * side].reshape(side, side)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.5), gridspec_kw={"width_ratios": [2.5, 1]})
colours = {TokenRole.PAD: "lightgrey", TokenRole.SPECIAL: "black", TokenRole.TEXT: "tab:orange", TokenRole.IMAGE: "tab:blue"}
for role, colour in colours.items():
    at = np.flatnonzero(roles == role)
    ax1.scatter(at, norm[at], s=8, color=colour, label=role.name.lower())
ax1.set(xlabel="token position", ylabel="|x|", title=f"residual-stream norm, layer {layer} ({language})")
ax1.legend(loc="upper right", fontsize=8)
image_path = Path(store.attrs.get("images_dir", "")) / str(ds.image.sel(sample=sample).values)
if image_path.is_file():
    ax2.imshow(Image.open(image_path).convert("RGB").resize((224, 224)), extent=(0, 1, 0, 1))
    ax2.imshow(grid, extent=(0, 1, 0, 1), alpha=0.5, cmap="inferno")
else:
    ax2.imshow(grid, cmap="inferno")
    print(f"image {str(image_path)!r} not found: showing the grid alone")
ax2.set(title=f"image tokens ({side} x {side})", xticks=[], yticks=[])
plt.show()

# %% [markdown]
# ## Disk usage and completeness
# The same numbers as `sae-store du` and `sae-store status`.

# %%
print(render_usage(store_usage(store)))

# %%
print(completion(store).render())
