"""A whole experiment on the tiny model: controls, dose-response, neutralise targets, splice quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sae_store.errors import ConfigError, SaeStoreError
from sae_store.intervene.batches import position_mask, prompt_batch, teacher_forced
from sae_store.intervene.captions import generate_captions
from sae_store.intervene.config import CaptionConfig, InterventionConfig
from sae_store.intervene.experiment import LanguageSamples, run_intervention
from sae_store.intervene.hooks import layer_hook
from sae_store.models.loader import LoadedModel
from tests.intervene.conftest import AR_PROMPT, EN_PROMPT, PerfectSAE, ToySAE

GENDERS = np.array(["male", "female", "male", "female"])
FEATURES = (2, 11, 40)


@pytest.fixture
def samples(tiny: LoadedModel, images: list[Image.Image]) -> list[LanguageSamples]:
    caps = generate_captions(
        tiny, images, EN_PROMPT, "en", config=CaptionConfig(max_new_tokens=6, batch_size=4)
    )
    return [LanguageSamples("en", EN_PROMPT, images, GENDERS, [c.token_ids for c in caps])]


def _run(tiny: LoadedModel, sae: torch.nn.Module, samples: list[LanguageSamples], **kw: object) -> object:
    config = InterventionConfig(**{"mode": "ablate", "batch_size": 3, "regenerate": False, **kw})  # type: ignore[arg-type]
    return run_intervention(tiny, sae, 1, FEATURES, samples, config)  # type: ignore[arg-type]


def test_controls_are_seeded_and_reproducible(
    tiny: LoadedModel, toy_sae: ToySAE, samples: list[LanguageSamples]
) -> None:
    a, b = _run(tiny, toy_sae, samples, seed=3), _run(tiny, toy_sae, samples, seed=3)
    c = _run(tiny, toy_sae, samples, seed=4)
    assert a.control_sets == b.control_sets and len(a.control_sets) == 10  # type: ignore[attr-defined]
    assert a.control_sets != c.control_sets  # type: ignore[attr-defined]
    assert all(len(s) == len(FEATURES) and not set(s) & set(FEATURES) for s in a.control_sets)  # type: ignore[attr-defined]
    ea, eb = a.languages["en"], b.languages["en"]  # type: ignore[attr-defined]
    assert np.array_equal(ea.control_effects, eb.control_effects) and ea.control_effects.shape == (10, 4)
    assert np.array_equal(ea.effect, eb.effect)
    assert np.all(np.isfinite(ea.effect)) and np.any(ea.effect != 0)


def test_dose_response_includes_the_identity(
    tiny: LoadedModel, toy_sae: ToySAE, samples: list[LanguageSamples]
) -> None:
    result = _run(
        tiny,
        toy_sae,
        samples,
        mode="amplify",
        alpha=4.0,
        n_controls=0,
        dose_alphas=(1.0, 2.0, 4.0),
        regenerate=True,
    )
    e = result.languages["en"]  # type: ignore[attr-defined]
    assert e.dose_effects.shape == (3, 4) and e.control_effects.shape == (0, 4)
    assert np.array_equal(e.dose_effects[0], np.zeros(4))  # alpha = 1 changes nothing, bit for bit
    assert np.array_equal(e.dose_effects[2], e.effect)  # the targeted run is alpha = 4
    assert not np.allclose(e.dose_effects[2], 3 * e.dose_effects[1])  # not linear in alpha - 1
    assert e.edited_captions is not None and len(e.edited_captions) == 4


def test_neutralise_targets_are_the_mean_over_both_genders(
    tiny: LoadedModel, toy_sae: ToySAE, samples: list[LanguageSamples]
) -> None:
    result = _run(tiny, toy_sae, samples, mode="neutralise", n_controls=0, positions="text")
    s = samples[0]
    tf = teacher_forced(tiny, prompt_batch(tiny, s.images, s.prompt), s.captions)
    mask = position_mask(tiny, tf.inputs, "text").prompt
    seen: list[torch.Tensor] = []
    with (
        layer_hook(tiny.adapter.decoder_layers(tiny.model)[1], lambda h: seen.append(h) or None),
        torch.no_grad(),
    ):
        tiny.model(**tf.inputs)
    f = toy_sae.encode(seen[0])
    means = [
        f[torch.from_numpy(rows)][mask[torch.from_numpy(rows)]].double().mean(0)
        for rows in (GENDERS == "male", GENDERS == "female")
    ]
    expected = (means[0] + means[1]) / 2
    targets = result.languages["en"].targets  # type: ignore[attr-defined]
    assert sorted(targets) == sorted(FEATURES)
    for i in FEATURES:
        assert targets[i] == pytest.approx(float(expected[i]), rel=1e-5)


def test_splice_of_a_perfect_sae_recovers_everything(
    tiny: LoadedModel, samples: list[LanguageSamples]
) -> None:
    sae = PerfectSAE(tiny.adapter.hidden_size)
    splice = _run(tiny, sae, samples, n_controls=0).languages["en"].splice  # type: ignore[attr-defined]
    assert splice.ce_sae == pytest.approx(splice.ce_clean, abs=1e-4)
    assert splice.ce_recovered == pytest.approx(1.0, abs=1e-3)
    assert splice.kl_sae < 1e-6 < splice.kl_zero
    assert splice.n_tokens == sum(len(c) for c in samples[0].captions)


def test_bad_experiments_are_refused(
    tiny: LoadedModel, toy_sae: ToySAE, samples: list[LanguageSamples]
) -> None:
    config = InterventionConfig(mode="ablate", n_controls=0, regenerate=False)
    only_male = [
        LanguageSamples("en", EN_PROMPT, samples[0].images, np.array(["male"] * 4), samples[0].captions)
    ]
    with pytest.raises(SaeStoreError, match="has 4 male- and 0 female-labelled samples"):
        run_intervention(tiny, toy_sae, 1, FEATURES, only_male, config)
    reordered = LanguageSamples("ar", AR_PROMPT, samples[0].images, GENDERS[::-1], samples[0].captions)
    with pytest.raises(SaeStoreError, match="language 'ar' does not hold the same samples as 'en'"):
        run_intervention(tiny, toy_sae, 1, FEATURES, [samples[0], reordered], config)
    with pytest.raises(SaeStoreError, match="targeted feature set is empty"):
        run_intervention(tiny, toy_sae, 1, (), samples, config)
    with pytest.raises(SaeStoreError, match=r"feature indices \[256\] are out of range"):
        run_intervention(tiny, toy_sae, 1, (1, 256), samples, config)
    with pytest.raises(SaeStoreError, match="trained on layer 1, not layer 2"):
        run_intervention(tiny, toy_sae, 2, FEATURES, samples, config)
    with pytest.raises(SaeStoreError, match="d_in=32, but the model's residual stream has width 64"):
        run_intervention(tiny, ToySAE(32, 64), 1, FEATURES, samples, config)
    with pytest.raises(ConfigError, match=r"n_controls must be 0 \(no controls\) or at least 10, got 5"):
        InterventionConfig(mode="ablate", n_controls=5)
    with pytest.raises(ConfigError, match="alpha must be > 0 for mode 'amplify'"):
        InterventionConfig(mode="amplify", alpha=0.0)
    with pytest.raises(ConfigError, match=r"dose_alphas\[0\] must be a positive number, got 0.0"):
        InterventionConfig(mode="amplify", dose_alphas=(0.0, 1.0))
