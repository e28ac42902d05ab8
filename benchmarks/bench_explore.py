"""Explorer: time until a page is interactive in a real browser, and the server's memory.

The explorer (``sae-store explore``) runs as its own process; headless Chromium opens the overview
and feature pages and waits until their plots are drawn and images decoded (the time a person
waits after a click). Then it browses 50 random feature pages and reads the server's RSS.

A feature page is interactive when its four histograms (by gender in each language, and the
activation density of image and of text tokens) are drawn and its images decoded; its sections then
include the logit lens, explanations and the test box (drawn, with its model given by ``--model``; a
run is not timed).

Stores: the demo store (``demo-output/store.zarr`` from ``make demo``, if present) and a synthetic
34-layer store with real SAE widths: 2,000 samples, d_sae 20,480, a features group with ~64
active features per sample, bias results and a TopK SAE per layer. Its residual width is 64 (not
Gemma's 2,560) to keep the generated store small; that affects only the per-token encoding of the
top samples. It is generated under ``bench-output/`` and deleted afterwards.
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import xarray as xr

from benchmarks.run import result
from sae_store.analyze.results import write_analysis
from sae_store.models import build_tiny_gemma3
from sae_store.store import ActivationStore
from sae_store.store import schema as S
from sae_store.store.schema import FEATURE_FRAC, FEATURE_MAX, FEATURE_MEAN, FEATURES
from tests.explore.conftest import write_lens, write_sae_weights
from tests.explore.drive import Browser
from tests.explore.server import running_explorer
from tests.report.browser import find_chromium
from tests.report.synthetic import create_features_group, make_store

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 5
BROWSED = 50
D_SAE, N_SAMPLES, N_LAYERS, ACTIVE = 20_480, 2_000, 34, 64


def _synthetic(root: Path) -> Path:
    store = make_store(
        root / "store.zarr", n_layers=N_LAYERS, n_samples=N_SAMPLES, hidden=64, samples_per_shard=100
    )
    _features(store)
    _bias(store)
    write_lens(store, n_features=D_SAE)
    write_sae_weights(root / "saes", list(store.layout.layers), d_in=64, d_sae=D_SAE)
    return store.path


def _features(store: ActivationStore) -> None:
    lay, rng = store.layout, np.random.default_rng(0)
    create_features_group(store, D_SAE)
    rows = np.repeat(np.arange(lay.n_samples), ACTIVE)
    for layer in lay.layers:
        for lang in lay.languages:
            x = np.zeros((lay.n_samples, D_SAE), np.float32)
            x[rows, rng.integers(0, D_SAE, rows.size)] = rng.gamma(1.0, 1.0, rows.size)
            store.write(FEATURE_MEAN, x, start=0, layer=layer, language=lang, group=FEATURES)
            store.write(FEATURE_MAX, 2 * x, start=0, layer=layer, language=lang, group=FEATURES)
            frac = ((x > 0) * 0.5).astype(np.float32)
            store.write(FEATURE_FRAC, frac, start=0, layer=layer, language=lang, group=FEATURES)
            used = np.full(lay.n_samples, 20, np.int32)
            store.write(S.TOKENS_USED, used, start=0, layer=layer, language=lang, group=FEATURES)
            # per role (16 image, 4 text tokens): even features on 8 image and 2 text tokens, odd ones on
            # 10 image tokens only
            odd = np.arange(D_SAE) % 2 == 1
            roles = np.stack([np.where(odd, 1.25 * frac, frac), np.where(odd, 0, frac)], axis=1)
            store.write(S.ROLE_FRAC, roles, start=0, layer=layer, language=lang, group=FEATURES)
            tokens = np.tile(np.array([16, 4], np.int32), (lay.n_samples, 1))
            store.write(S.ROLE_TOKENS, tokens, start=0, layer=layer, language=lang, group=FEATURES)
            ones = np.ones(lay.n_samples, bool)
            store.write(S.COMPLETE, ones, start=0, layer=layer, language=lang, group=FEATURES)
    store.consolidate()


def _bias(store: ActivationStore) -> None:
    lay, rng = store.layout, np.random.default_rng(1)
    shape = (len(lay.layers), len(lay.languages), D_SAE)
    d = rng.normal(0, 0.15, shape)
    q = np.clip(np.exp(-np.abs(d) * 25) * rng.uniform(0.5, 1, shape), 1e-12, 1)
    dims = (S.LAYER, S.LANGUAGE, S.FEATURE)
    data = {"d": (dims, d), "q": (dims, q), "ci_low": (dims, d - 0.1), "ci_high": (dims, d + 0.1)}
    for name in ("male_mean", "female_mean", "male_freq", "female_freq"):
        data[name] = (dims, rng.uniform(0, 1, shape))
    data["n_significant"] = ((S.LAYER, S.LANGUAGE), (q <= 0.05).sum(-1))
    languages = np.array(lay.languages, dtype=object)
    coords = {S.LAYER: list(lay.layers), S.LANGUAGE: languages, S.FEATURE: np.arange(D_SAE)}
    write_analysis(store, "bias", xr.Dataset(data, coords=coords, attrs={"config": {"alpha": 0.05}}))
    store.consolidate()


#: What a feature page draws before it is interactive: four histograms, and every image decoded (a
#: feature drawn at random fires on a few samples, or none: its page may have one example or none).
FEATURE_READY = {"canvases": 4, "images": 0}


def _measure(store: Path, chromium: str, *extra: str) -> dict[str, Any]:
    ds = xr.open_zarr(store, group=FEATURES)
    layers, d_sae = [int(v) for v in ds.layer.values], int(ds.sizes["feature"])
    rng = random.Random(0)
    overview, feature = [], []
    with running_explorer(store, *extra) as (url, proc):
        server = psutil.Process(proc.pid)
        rss_start = server.memory_info().rss
        browser = Browser(chromium)
        try:
            for _ in range(ROUNDS):  # interleaved: overview, feature page, overview, ...
                overview.append(browser.open(url, canvases=1))
                f = f"{url}?page=feature&layer={rng.choice(layers)}&feature={rng.randrange(d_sae)}"
                feature.append(browser.open(f, **FEATURE_READY))
            sections = " | ".join(browser.panels()["headings"])
            for part in ("Activation density", "Logit lens", "Test this feature"):
                if part not in sections:
                    raise RuntimeError(f"the feature page has no {part!r} section: {sections}")
            rss_peak = 0
            browsed = []
            for _ in range(BROWSED):
                f = f"{url}?page=feature&layer={rng.choice(layers)}&feature={rng.randrange(d_sae)}"
                browsed.append(browser.open(f, **FEATURE_READY))
                rss_peak = max(rss_peak, server.memory_info().rss)
            time.sleep(1)
            rss_end = server.memory_info().rss
        finally:
            browser.close()
    return {
        "overview": overview,
        "feature": feature,
        "browsed": browsed,
        "rss_start": rss_start,
        "rss_peak": rss_peak,
        "rss_end": rss_end,
    }


def _row(name: str, m: dict[str, Any]) -> str:
    def s(v: list[float]) -> str:
        return f"{statistics.median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})"

    mb = 1 / 2**20
    return (
        f"| {name} | {s(m['overview'])} | {s(m['feature'])} | {statistics.median(m['browsed']):.2f} / "
        f"{max(m['browsed']):.2f} | {m['rss_start'] * mb:.0f} | {m['rss_peak'] * mb:.0f} | "
        f"{m['rss_end'] * mb:.0f} |"
    )


def main() -> dict[str, Any]:
    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("the explorer benchmark needs Chromium (apt-get install chromium)")
    rows = []
    demo = ROOT / "demo-output" / "store.zarr"
    if demo.is_dir():
        rows.append(_row("demo store (4 layers, 44 samples, d_sae 256)", _measure(demo, chromium)))
    root = ROOT / "bench-output" / "explore"
    shutil.rmtree(root, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        store = _synthetic(root)
        made = time.perf_counter() - t0
        model = build_tiny_gemma3(root / "tiny-gemma3", seed=0)  # the test box's model (not run)
        rows.append(
            _row(
                f"synthetic 34 layers, {N_SAMPLES} samples, d_sae {D_SAE:,}",
                _measure(store, chromium, "--model", str(model)),
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result(
        "Explorer: time to an interactive page, server memory",
        [
            "Seconds until a page is interactive in headless Chromium (plots drawn, images decoded), "
            f"median and each of {ROUNDS} interleaved rounds; then {BROWSED} random feature pages "
            "(median / slowest) and the server's RSS in MiB (bound stated in the README: 2 GiB). "
            f"The synthetic store took {made:.0f} s to generate.",
            "",
            "| store | overview (s) | feature page (s) | 50 feature pages (s) | RSS start | RSS peak "
            "| RSS end |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ],
    )


if __name__ == "__main__":
    main()
