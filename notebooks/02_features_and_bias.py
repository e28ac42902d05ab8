# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # SAE features and gender bias
#
# The `features` group holds, per layer, language, sample and SAE feature, the feature's mean and
# max over the sample's tokens (`sae-store encode`). `sae-store analyze bias` tests every feature
# for a male/female difference and writes its results into the store's `analysis/bias` group and
# to `results/comprehensive_analysis_results.json`. This notebook reads both, draws a volcano plot,
# and shows one feature's activation over the image-token grid of its top images.
#
# Set the store path in the next cell, or with the `SAE_STORE` environment variable. By default it
# is the store of `make demo` (`demo-output/store.zarr`), found from the repository root or from
# this `notebooks/` folder, where Jupyter starts the kernel. Cells whose
# inputs do not exist yet say which command produces them.

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
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from IPython.display import display
from PIL import Image

from sae_store.store import open_store

store = open_store(STORE)
groups = set(store.zarr_group().group_keys())
analyses = set(store.zarr_group("analysis").group_keys()) if "analysis" in groups else set()
print("groups:", sorted(groups), "analyses:", sorted(analyses))

# %% [markdown]
# ## The features group

# %%
if "features" in groups:
    features = xr.open_zarr(STORE, group="features")
    print(features)
    layer0, lang0 = int(features.layer.values[-1]), str(features.language.values[0])
    top = features.feature_mean.sel(layer=layer0, language=lang0).mean("sample").compute()
    print(f"most active features on average, layer {layer0} ({lang0}):")
    print(top.to_series().sort_values(ascending=False).head(5).to_string())
else:
    print(f"no features group yet: run `sae-store encode {STORE} --saes saes/`")

# %% [markdown]
# ## Bias results
# Per layer and language, every feature's Cohen's d (male minus female) and its Benjamini-Hochberg
# q-value. The JSON file keeps the shape scripts read: `results["layers"]["10"]["male_biased_features"]`.

# %%
bias = None
if "bias" in analyses:
    bias = xr.open_zarr(STORE, group="analysis/bias")
    alpha = json.loads(bias.attrs["config"])["alpha"]
    print(bias[["d", "q", "n_significant"]])
    print(bias.n_significant.to_pandas())
else:
    print(f"no bias results yet: run `sae-store analyze bias {STORE}`")

results_file = Path(STORE).parent / "results" / "comprehensive_analysis_results.json"
if results_file.is_file():
    results = json.loads(results_file.read_text())
    for direction in ("male", "female"):
        key = f"n_{direction}_biased_significant"
        layer_key = max(results["layers"], key=lambda k: results["layers"][k][key])
        rows = results["layers"][layer_key][f"{direction}_biased_features"]
        if not rows:
            print(f"no significant {direction}-biased feature in any layer ({results['primary_language']})")
            continue
        print(f"layer {layer_key}, {results['primary_language']}: top {direction}-biased features")
        display(pd.DataFrame(rows)[["feature", "male_mean", "female_mean", "d", "ci_low", "ci_high", "q"]].head())
else:
    print(f"{results_file} not found (written by `sae-store analyze bias`)")

# %% [markdown]
# ## A volcano plot
# Effect size against -log10 q for the layer with the most significant features.

# %%
if bias is not None:
    layer = int(bias.n_significant.sum("language").idxmax())
    fig, axes = plt.subplots(1, bias.sizes["language"], figsize=(5 * bias.sizes["language"], 4), squeeze=False)
    for ax, lang in zip(axes[0], bias.language.values):
        sel = bias.sel(layer=layer, language=lang)
        d, q = sel.d.values, sel.q.values
        sig = q < alpha
        colour = np.where(sig & (d > 0), "tab:blue", np.where(sig & (d < 0), "tab:red", "lightgrey"))
        ax.scatter(d, -np.log10(np.maximum(q, 1e-300)), s=6, c=colour)
        ax.axhline(-np.log10(alpha), color="black", ls="--", lw=0.8)
        ax.set(title=f"layer {layer}, {lang}: {int(sig.sum())} significant", xlabel="Cohen's d", ylabel="-log10 q")
    plt.show()

# %% [markdown]
# ## One feature on the image-token grid
# `sae-store analyze visual` stores, for each inspected feature and each of its top samples, the
# feature's activation over the image tokens as a square grid.

# %%
if "visual" in analyses:
    visual = xr.open_zarr(STORE, group="analysis/visual").load()
    entry = 0
    f, la, lg = int(visual.entry_feature[entry]), int(visual.entry_layer[entry]), str(visual.entry_language[entry].values)
    samples = [str(s) for s in visual["sample"].values[entry] if str(s)]
    images_dir = Path(store.attrs.get("images_dir", ""))
    paths = xr.open_zarr(STORE).image.sel(sample=samples).values
    fig, axes = plt.subplots(1, len(samples), figsize=(2.5 * len(samples), 2.8), squeeze=False)
    vmax = float(np.nanmax(visual["map"].values[entry])) or 1.0
    for ax, s, path, grid in zip(axes[0], samples, paths, visual["map"].values[entry]):
        if (images_dir / str(path)).is_file():
            ax.imshow(Image.open(images_dir / str(path)).convert("RGB").resize((224, 224)), extent=(0, 1, 0, 1))
        ax.imshow(grid, extent=(0, 1, 0, 1), alpha=0.55, cmap="inferno", vmin=0, vmax=vmax)
        ax.set(title=s, xticks=[], yticks=[])
    fig.suptitle(f"layer {la} ({lg}) feature {f}")
    plt.show()
else:
    print(f"no visual results yet: run `sae-store analyze visual {STORE} --saes saes/`")
