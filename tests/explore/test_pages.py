"""The explorer's pages built from a store with results: what each shows, checked against the data."""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
import xarray as xr

from sae_store.explore import Explorer, build_page
from sae_store.explore.app import resolve_search
from sae_store.explore.context import N_QUANTILES, N_RANDOM, N_TOP, visible_token
from sae_store.store import ActivationStore
from sae_store.train.formats import load_sae
from sae_store_cli.main import build_parser
from tests.report.synthetic import make_store, write_features

from .conftest import N_FEATURES
from .pages import figures, page_text


def _feature_links(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"page=feature&amp;layer=(\d+)&amp;feature=(\d+)", text)]


def test_overview_shows_volcano_agreement_quality_and_completeness(explorer: Explorer):
    page = build_page(explorer, {})
    text = page_text(page)
    data = explorer.current()
    bias = xr.open_zarr(data.store.path, group="analysis/bias")
    layer = int(bias.layer.values[-1])
    # the volcano of the deepest layer: one point per feature with a finite d and q
    volcano = figures(page)[0]
    b = bias.sel(layer=layer, language="en")
    finite = np.isfinite(b.d.values) & np.isfinite(b.q.values)
    assert len(volcano) == int(finite.sum())
    assert sorted(volcano.dframe()["feature"]) == sorted(b.feature.values[finite])
    # significant counts per layer and language, as the analysis wrote them
    for lang in ("en", "ar"):
        assert f"significant ({lang})" in text
    assert "Cross-lingual agreement" in text and "Spearman rho" in text
    assert "SAE quality" in text
    n = '<td class="num">'
    assert f"{n}2</td><td>topk</td>{n}64</td>{n}0.800</td>{n}8.000</td>{n}0.020</td>" in text
    assert "Completeness (40 samples)" in text and "100%" in text
    # the explained features (2:3 and 2:0, both at chance), linked, with their detection score
    explained = text[text.index("### Explained features: the best 2 of 2 by detection score in en") :]
    assert _feature_links(explained[: explained.index("</table>")]) == [(2, 0), (2, 3)]
    assert "Active on &quot;image 1,3&quot;.</td><td>loopback:rule</td><td>0.500</td>" in explained
    # the evaluated SAE set: the best per layer (the only set) by explained variance (no model runs)
    assert "Which SAE to trust" in text
    ev = xr.open_zarr(data.store.path, group="evaluation/saes", consolidated=False)
    for la in ev.layer.values:
        value = float(ev.reconstruction_total.sel(layer=la, role="all", metric="explained_variance"))
        assert f"{n}{la}</td><td>saes</td><td>explained_variance</td>{n}{value:.3f}</td>" in text


ARGS_2_3 = {"page": "feature", "layer": "2", "feature": "3"}


def test_feature_page_statistics_top_samples_and_neighbours(explorer: Explorer, full_store: ActivationStore):
    layer, feature = 2, 3
    page = build_page(explorer, {**ARGS_2_3, "language": "ar"})
    text = page_text(page)
    bias = xr.open_zarr(full_store.path, group="analysis/bias").sel(layer=layer).isel(feature=feature)
    for lang in ("en", "ar"):
        d = float(bias.d.sel(language=lang))
        assert f"{d:.3f}" in text
    # the examples of the page's language (its language switch): the top samples by per-sample max,
    # then one per activation quantile and random firing ones, as `explain` draws them
    feats = xr.open_zarr(full_store.path, group="features")
    for lang in ("en", "ar"):
        shown = text if lang == "ar" else page_text(build_page(explorer, {**ARGS_2_3, "language": lang}))
        col = feats.feature_max.sel(layer=layer, language=lang).isel(feature=feature).values
        top = feats.sample.values[np.argsort(-col, kind="stable")[:N_TOP]]
        links = re.findall(r"page=sample&amp;id=(\w+)&amp;layer=2&amp;feature=3&amp;language=(\w+)", shown)
        assert links[:N_TOP] == [(str(s), lang) for s in top]
        kinds = re.findall(r"<b>(top activation|activation quantile \d|random firing sample)</b>", shown)
        assert (
            kinds
            == ["top activation"] * N_TOP
            + [f"activation quantile {i}" for i in range(N_QUANTILES)]
            + ["random firing sample"] * N_RANDOM
        )
        assert f"Activations in context ({lang})" in shown
        # tokens highlighted by activation, the value on hover; the example's max is the brightest
        sid = str(top[0])
        acts = explorer.current().tokens(
            lang, int(np.flatnonzero(feats.sample.values == sid)[0]), layer=2, feature=3
        )
        assert acts.acts is not None
        best = float(acts.acts[acts.roles != 3].max(initial=0.0))
        assert f": {best:.3f}" in shown and "rgba(255,120,0,1.00)" in shown
        # images at 224 px with the colour scale, and the most active patches cropped
        assert shown.count('class="scale"') == len(kinds) and "linear-gradient" in shown
        assert 'alt="patch (' in shown
    assert '<div class="tokens" dir="rtl" lang="ar">' in text
    # neighbours: the highest decoder cosines, computed here from the saved weights
    W = load_sae(full_store.path.parent / "saes" / "layer_2").sae.W_dec.detach().numpy()
    cos = (W @ W[feature]) / (np.linalg.norm(W, axis=1) * np.linalg.norm(W[feature]))
    cos[feature] = -np.inf
    expected = [int(f) for f in np.argsort(-cos)[:8]]
    section = text[text.index("Neighbouring features") :]
    assert [f for _, f in _feature_links(section)][:8] == expected
    # interventions on layer 2 that edit feature 3 (features 0, 1, 2 only): none
    assert "No intervention on layer 2 includes feature 3" in text
    # one SAE for both languages: the page says so
    assert "One SAE encodes both languages" in text
    # histograms by gender, one per language; the activation density of each encoded role
    assert len(figures(page)) == 4


def _densities(page) -> list:
    import holoviews as hv

    return [
        f
        for f in figures(page)
        if isinstance(f, hv.Overlay) and f.values()[0].kdims[0].name == "log10 firing frequency"
    ]


def _density_said(freq: np.ndarray, feature: int, role: str, lang: str) -> str:
    """What the page says of ``feature`` given the frequencies ``freq`` of every feature on ``role``."""
    silent = f"{int((freq == 0).sum())} features never fire there (not drawn)."
    if freq[feature] == 0:
        return f"Feature {feature} is never active on the {role} tokens of {lang}; {silent}"
    rank = int((freq > freq[feature]).sum()) + 1
    return (
        f"Feature {feature} is active on {freq[feature]:.3%} of the {role} tokens "
        f"(log10 {np.log10(freq[feature]):.2f}), rank {rank} of {N_FEATURES} features by frequency; {silent}"
    )


@pytest.mark.parametrize("feature", [2, 3])
def test_feature_page_activation_density_per_role(
    explorer: Explorer, full_store: ActivationStore, feature: int
):
    """log10 firing frequency of every feature of the layer in the page's language, one histogram per
    encoded role: the role's tokens where each feature is active (``role_frac`` x ``role_tokens``) over
    the role's tokens encoded, computed here directly; the feature marked. Odd features never fire on
    text tokens (the synthetic features group plants them on image tokens only)."""
    layer = 2
    feats = xr.open_zarr(full_store.path, group="features").sel(layer=layer)
    data = explorer.current()
    for lang in ("en", "ar"):
        page = build_page(explorer, {**ARGS_2_3, "feature": str(feature), "language": lang})
        text = page_text(page)
        assert f"### Activation density: every feature of layer {layer} ({lang})" in text
        expected = {}
        for role in ("image", "text"):
            frac = feats.role_frac.sel(language=lang, role=role).values.astype(np.float64)
            tokens = feats.role_tokens.sel(language=lang, role=role).values.astype(np.float64)
            expected[role] = (frac * tokens[:, None]).sum(0) / tokens.sum()
        got = data.role_frequency(layer, lang)
        assert got is not None and list(got) == ["image", "text"]
        for role, freq in expected.items():
            np.testing.assert_allclose(got[role], freq, rtol=1e-6)
            assert _density_said(freq, feature, role, lang) in text
        assert (expected["text"][1::2] == 0).all() and (expected["image"] > 0).any()
        densities = _densities(page)  # image, then text; the feature's line where it fires
        assert len(densities) == 2
        for fig, role in zip(densities, ("image", "text"), strict=True):
            assert fig.values()[0].dframe()["features"].sum() == int((expected[role] > 0).sum())
            if expected[role][feature] > 0:
                assert fig.values()[1].data == pytest.approx(np.log10(expected[role][feature]), rel=1e-6)
            else:
                assert len(fig) == 1
    assert feature % 2 == 0 or "is never active on the text tokens" in text


def test_feature_page_density_of_features_encoded_before_the_role_split(full_store, tmp_path):
    """A features group without ``role_frac``: one pooled histogram (``feature_frac`` x ``tokens_used``)
    and the command that encodes the features again."""
    import shutil

    from tests.report.synthetic import drop_role_arrays

    copy = tmp_path / "store"
    shutil.copytree(full_store.path.parent, copy)
    store_path = copy / full_store.path.name
    from sae_store.store import open_store

    drop_role_arrays(open_store(store_path))
    old = Explorer(store_path)
    layer, feature, lang = 2, 3, "en"
    page = build_page(old, {**ARGS_2_3, "language": lang})
    text = page_text(page)
    feats = xr.open_zarr(store_path, group="features", consolidated=False).sel(layer=layer, language=lang)
    frac = feats.feature_frac.values.astype(np.float64)
    used = feats.tokens_used.values.astype(np.float64)
    freq = (frac * used[:, None]).sum(0) / used.sum()
    assert old.current().role_frequency(layer, lang) is None
    np.testing.assert_allclose(old.current().firing_frequency(layer, lang), freq, rtol=1e-6)
    (density,) = _densities(page)
    assert density.values()[1].data == pytest.approx(np.log10(freq[feature]), rel=1e-6)
    assert _density_said(freq, feature, "image and text", lang) in text
    assert (
        '<div class="missing">These features were encoded before per-role statistics were stored: the '
        "density pools the image and text tokens. A density per role needs the features encoded again. "
        f"Run <code>sae-store encode {store_path} --saes SAE_DIR --overwrite</code> first.</div>" in text
    )


def test_feature_page_lists_interventions_that_edit_it(explorer: Explorer):
    text = page_text(build_page(explorer, {"page": "feature", "layer": "1", "feature": "2"}))
    assert "Interventions involving this feature" in text
    assert "male_biased_ablation" in text and "male_biased_amplification" in text


def test_sample_page_captions_features_and_tokens(explorer: Explorer, full_store: ActivationStore):
    page = build_page(explorer, {"page": "sample", "id": "s0005", "language": "ar"})
    text = page_text(page)
    assert "female" in text
    assert '<div dir="rtl" lang="ar">امرأة في الحديقة.</div>' in text
    assert '<div dir="ltr" lang="en">A woman in a park.</div>' in text
    feats = xr.open_zarr(full_store.path, group="features")
    for layer in (0, 1, 2):
        row = feats.feature_max.sel(layer=layer, language="ar", sample="s0005").values
        top = int(np.argmax(row))
        assert f"layer={layer}&amp;feature={top}&amp;language=ar" in text
    # the per-token view: the strongest feature of all layers, its activation at every real token
    bars = figures(page)[0]
    assert len(bars) == 22  # the Arabic prompt's tokens (16 image + 6 others)
    assert text.count("data:image/png;base64,") == 1


def test_sample_page_token_activations_match_the_sae(explorer: Explorer, full_store: ActivationStore):
    page = build_page(explorer, {"page": "sample", "id": "s0002", "layer": "1", "feature": "7"})
    bars = figures(page)[0].dframe()
    root = xr.open_zarr(full_store.path)
    x = root.activations.sel(layer=1, language="en", sample="s0002").values[:20]
    sae = load_sae(full_store.path.parent / "saes" / "layer_1").sae
    import torch

    expected = sae.encode(torch.from_numpy(np.nan_to_num(x))).detach().numpy()[:, 7]
    np.testing.assert_allclose(bars["activation"].to_numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("5", {"page": "feature", "layer": 2, "feature": 5}),
        ("1:7", {"page": "feature", "layer": 1, "feature": 7}),
        ("s0003", {"page": "sample", "id": "s0003"}),
    ],
)
def test_search_box_resolves_features_and_samples(explorer: Explorer, query, expected):
    assert resolve_search(explorer.current(), query, None) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"page": "feature", "layer": "2", "feature": "64"},
            f"feature 64 is out of range: the SAEs have features 0..{N_FEATURES - 1}",
        ),
        (
            {"page": "feature", "layer": "9", "feature": "1"},
            "layer 9 is not in the store; it holds layers [0, 1, 2]",
        ),
        (
            {"page": "sample", "id": "nope"},
            "sample 'nope' is not in the store (it holds 40 samples, e.g. 's0000'",
        ),
        ({"page": "search", "q": "2:99"}, "feature 99 is out of range"),
        ({"page": "feature", "layer": "x", "feature": "1"}, "layer='x' in the address is not a whole number"),
        ({"language": "fr"}, "language 'fr' is not in the store; it holds languages ['en', 'ar']"),
    ],
)
def test_bad_addresses_say_what_is_wrong(explorer: Explorer, args, message):
    text = page_text(build_page(explorer, args))
    assert "Cannot show this page" in text
    assert message.replace("'", "&#x27;") in text


def test_a_page_that_fails_says_so_instead_of_staying_blank(explorer: Explorer, monkeypatch, caplog):
    import sae_store.explore.app as app

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app, "feature_page", broken)
    text = page_text(build_page(explorer, {"page": "feature", "layer": "1", "feature": "2"}))
    assert (
        "this page failed (RuntimeError: boom); the explorer&#x27;s log has the traceback: report it" in text
    )
    assert "page {'page': 'feature', 'layer': '1', 'feature': '2'} failed" in caplog.text


def test_store_without_features_says_what_to_run(bare_store: ActivationStore):
    explorer = Explorer(bare_store.path)
    text = page_text(build_page(explorer, {}))
    assert (
        f"No SAE features are encoded yet. Run <code>sae-store encode {bare_store.path} --saes SAE_DIR</code>"
        in text
    )
    assert f"sae-store train {bare_store.path} --out SAE_DIR" in text
    sample = page_text(build_page(explorer, {"page": "sample", "id": "s0001"}))
    assert "sae-store encode" in sample and "data:image/png;base64," in sample


def test_store_with_features_but_no_results_says_what_to_run(tmp_path):
    store = make_store(tmp_path / "store.zarr", n_samples=16)
    write_features(store, n_features=N_FEATURES)
    text = page_text(build_page(Explorer(store.path), {}))
    assert f"No bias results yet. Run <code>sae-store analyze bias {store.path}</code> first." in text
    feature = page_text(build_page(Explorer(store.path), {"page": "feature", "layer": "0", "feature": "1"}))
    assert f"sae-store analyze bias {store.path}" in feature
    assert "No SAE for layer 0: token activations cannot be computed" in feature


def test_suggested_commands_are_valid_command_lines(bare_store: ActivationStore, tmp_path):
    """Every command a page of a bare or a results-less store suggests parses with the real CLI."""
    store = make_store(tmp_path / "store.zarr", n_samples=16)
    write_features(store, n_features=N_FEATURES)
    unextracted = make_store(tmp_path / "unextracted.zarr", n_samples=16, written_layers=0)
    texts = [page_text(build_page(Explorer(s.path), {})) for s in (bare_store, store, unextracted)]
    texts.append(
        page_text(build_page(Explorer(store.path), {"page": "feature", "layer": "0", "feature": "1"}))
    )
    commands = {c for t in texts for c in re.findall(r"<code>(sae-store [^<]+)</code>", t)}
    assert len(commands) >= 4
    parser = build_parser()
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])  # SystemExit on an unknown flag or command
        assert args.func is not None


def test_feature_that_never_fires_on_the_encoded_tokens_says_where_it_fires(tmp_path):
    """No made-up top samples (max 0.00): the page says so and lists the tokens of the first samples
    where the SAE does fire it (special tokens, which ``encode`` leaves out)."""
    import torch

    from sae_store.explore.feature import SCAN_SAMPLES
    from sae_store.store.schema import (
        FEATURE_FRAC,
        FEATURE_MAX,
        FEATURE_MEAN,
        FEATURES,
        ROLE_FRAC,
        TOKENS_USED,
    )

    from .conftest import write_sae_weights

    store = make_store(tmp_path / "store.zarr", n_samples=16)
    write_features(store, n_features=N_FEATURES)
    write_sae_weights(tmp_path / "saes", [0], d_in=store.layout.hidden_size, d_sae=N_FEATURES)
    root = xr.open_zarr(store.path)
    x = np.nan_to_num(root.activations.sel(layer=0, language="en").values[:SCAN_SAMPLES])
    roles = root.token_role.sel(language="en").values[:SCAN_SAMPLES]
    sae = load_sae(tmp_path / "saes" / "layer_0").sae
    with torch.no_grad():
        acts = sae.encode(torch.from_numpy(x.reshape(-1, x.shape[-1]))).numpy().reshape(*x.shape[:2], -1)
    acts = acts * (roles != 0)[..., None]
    feature = int(np.argmax((acts.max(axis=1) > 0).sum(axis=0)))  # fires in the most of those samples
    firing = [f"s{i:04d}" for i in range(SCAN_SAMPLES) if acts[i, :, feature].max() > 0]
    assert 0 < len(firing) < SCAN_SAMPLES + 1
    feats = xr.open_zarr(store.path, group="features").sel(layer=0, language="en")
    for name in (FEATURE_MAX, FEATURE_MEAN, FEATURE_FRAC, ROLE_FRAC):  # never fires on the encoded tokens
        values = feats[name].values.copy()
        values[..., feature] = 0
        store.write(name, values, start=0, layer=0, language="en", group=FEATURES)
    used = np.arange(1, 17, dtype=np.int32)  # samples of unequal length weigh by their tokens
    store.write(TOKENS_USED, used, start=0, layer=0, language="en", group=FEATURES)
    frac = feats[FEATURE_FRAC].values.copy()
    frac[:, feature] = 0
    explorer = Explorer(store.path)
    expected = np.average(frac.astype(np.float64), weights=used, axis=0)
    np.testing.assert_allclose(explorer.current().firing_frequency(0, "en"), expected, rtol=1e-6)

    text = page_text(build_page(explorer, {**ARGS_2_3, "layer": "0", "feature": str(feature)}))
    assert (
        f"Feature {feature} does not fire on the image and text tokens of any of the 16 encoded samples "
        "in en (the tokens <code>encode</code> summarised): it has no top samples there." in text
    )
    assert "max 0.00" not in text and "data:image/png;base64," not in text
    for role in ("image", "text"):
        assert f"Feature {feature} is never active on the {role} tokens of en" in text
    assert f"Where it fires instead: every token of the first {SCAN_SAMPLES} samples" in text
    table = text[text.index("Where it fires instead") :]
    rows = re.findall(
        r"<tr><td>en</td><td>(s\d+)</td><td>(\w+)</td><td>[^<]*</td><td>([\d.]+)</td></tr>", table
    )
    assert list(dict.fromkeys(s for s, _, _ in rows)) == firing
    first = int(firing[0][1:])
    assert rows[0][2] == f"{acts[first, :, feature].max():.3f}"


def test_paired_correlation_of_a_constant_feature_is_said_to_be_undefined():
    from sae_store.explore.feature import _correlation

    assert _correlation(0.1234) == "paired correlation across samples r = 0.123"
    assert _correlation(float("nan")) == (
        "no paired correlation across samples: the feature takes one value in a language"
    )


def test_store_without_activations_says_to_extract_first(tmp_path):
    store = make_store(tmp_path / "store.zarr", n_samples=16, written_layers=0)
    explorer = Explorer(store.path)
    for args in ({}, {"page": "sample", "id": "s0001"}):
        text = page_text(build_page(explorer, args))
        assert (
            "No activations are extracted yet. Run "
            f"<code>sae-store extract {store.path} --model MODEL_DIR</code> first." in text
        )
        assert "sae-store encode" not in text and "sae-store train" not in text
    partly = make_store(tmp_path / "partly.zarr", n_samples=16, written_layers=1)
    text = page_text(build_page(Explorer(partly.path), {}))
    assert f"Only 33% of the activations are extracted. Run <code>sae-store extract {partly.path}" in text


def test_feature_page_shows_explanations_and_logit_lens(explorer: Explorer):
    text = page_text(build_page(explorer, ARGS_2_3))
    # the explanation the loopback endpoint wrote for 2:3, with its scores per language
    section = text[text.index("Explanations (scored") :]
    assert "loopback:rule" in section and "detection en" in section and "fuzzing ar" in section
    # the synthetic lens: feature 3 of layer 2 promotes 203..207, suppresses 897..893; terms by rank
    lens = text[text.index("Logit lens") :]
    promoted = re.findall(r"&lt;id (\d+)&gt;", lens)
    assert promoted[:4] == ["203", "897", "204", "896"]
    words = re.findall(r"<td[^>]*>(man|woman|رجل)</td>", lens)
    assert words == ["man", "woman", "رجل"]  # ranks 4, 5, 6: (f + w) % 50 + 1
    assert "among the 1,000 tokens" in lens
    # a feature without an explanation says how to get one
    other = page_text(build_page(explorer, {"page": "feature", "layer": "1", "feature": "5"}))
    assert "sae-store explain " in other and "--features 1:5" in other


def test_whitespace_tokens_are_drawn_visibly():
    assert visible_token(" ") == "\u2423" and visible_token("\n\n") == "\u21b5\u21b5"
    assert visible_token(" man") == " man"  # a word keeps its leading space
