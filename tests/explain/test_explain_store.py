"""``sae-store explain`` on a real store: the loopback endpoint and a local model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sae_store.autointerp.config import ExplainConfig
from sae_store.autointerp.run import Entry, explain
from sae_store.store import open_store
from sae_store.store import schema as S
from sae_store.store.results import has_group, read_group
from tests.analyze.synthetic import Built, build_store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_store(tmp_path_factory.mktemp("explain"))


def test_loopback_explains_scores_stores_and_exports(built: Built, tmp_path: Path) -> None:
    config = ExplainConfig(
        explainer="loopback", features="0:0,0:3,1:1", n_held=4, cache=str(tmp_path / "cache")
    )
    entries = explain(built.store.path, str(built.sae_dirs[0].parent), config, export=tmp_path / "delphi")
    ex = read_group(open_store(built.store.path), S.EXPLANATIONS, load=True)
    assert ex.sizes["entry"] == 3
    assert [int(v) for v in ex.entry_layer.values] == [0, 0, 1]
    assert [int(v) for v in ex.entry_feature.values] == [0, 3, 1]
    assert set(ex.explainer.values) == {"loopback:rule"}
    # planted features fire on image cells: a text explainer names the cell it saw marked most
    assert all(str(v).startswith('Active on "image ') for v in ex.explanation.values)
    assert bool(ex.image_feature.values.all()) and not bool(ex.images_shown.values.any())
    assert set(ex.language.values) == {"en", "ar"}
    for e in entries:
        assert {k for k in e.scores} == {(la, m) for la in ("en", "ar") for m in ("detection", "fuzzing")}
        shown = {x.sample for x in e.shown}
        assert not shown & {x.sample for x in e.held["en"]} and not shown & {x.sample for x in e.held["ar"]}
    ba = ex.fuzzing_balanced_accuracy.values
    assert np.all((ba >= 0) & (ba <= 1))
    samples = ex.explain_sample.isel(entry=0).values
    assert sum(bool(s) for s in samples) == len(entries[0].shown)
    assert json.loads((tmp_path / "delphi/explanations/layers.0_latent3.txt").read_text()).startswith(
        "Active on"
    )
    records = json.loads((tmp_path / "delphi/scores/detection/layers.0_latent3.txt").read_text())
    assert {
        "str_tokens",
        "activations",
        "distance",
        "activating",
        "prediction",
        "probability",
        "correct",
    } <= set(records[0])
    # the report's section: one row per explained feature, and the text-only explainer named
    from sae_store.report.explain_sections import explanations_section
    from sae_store.report.section import Notice, Table

    section = explanations_section(ex, None, None, None, ["en", "ar"])
    (table,) = [i for i in section.items if isinstance(i, Table)]
    assert table.frame["feature"].tolist() == [0, 3, 1] and "detection ar" in table.frame
    notice = next(i for i in section.items if isinstance(i, Notice))
    assert "explained from text contexts by `loopback:rule`" in notice.markdown
    # a rerun of one feature asks nothing again (the cache) and keeps the other entries
    cached = sorted((tmp_path / "cache").rglob("*.json"))
    again = ExplainConfig(explainer="loopback", features="0:3", n_held=4, cache=str(tmp_path / "cache"))
    explain(built.store.path, str(built.sae_dirs[0].parent), again)
    ex2 = read_group(open_store(built.store.path), S.EXPLANATIONS, load=True)
    assert ex2.sizes["entry"] == 3
    assert sorted((tmp_path / "cache").rglob("*.json")) == cached
    assert sorted(ex2.explanation.values.tolist()) == sorted(ex.explanation.values.tolist())


def test_unreachable_endpoint_writes_nothing(tmp_path: Path) -> None:
    built = build_store(tmp_path / "s")
    config = ExplainConfig(explainer="http://127.0.0.1:9/v1", features="0:0", timeout=2)
    with pytest.raises(
        Exception, match=r"^the explainer endpoint http://127\.0\.0\.1:9/v1/chat/completions cannot"
    ):
        explain(built.store.path, str(built.sae_dirs[0].parent), config)
    assert not has_group(open_store(built.store.path), S.EXPLANATIONS)
    assert not (built.store.path.parent / ".explain-cache").exists()


def _explain_one(built: Built, explainer: str, feature: str, tmp_path: Path) -> list[Entry]:
    """One feature explained by a local model folder with few examples and short replies."""
    config = ExplainConfig(
        explainer=explainer,
        features=feature,
        n_held=2,
        n_top=2,
        n_quantiles=1,
        n_random=0,
        max_new_tokens=6,
        device="cpu",
        cache=str(tmp_path / "c"),
    )
    return explain(built.store.path, str(built.sae_dirs[0].parent), config)


def test_local_model_folder_explains_through_the_same_path(
    built: Built, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The tiny random Gemma 3 is a VLM: it is shown the marked images (its replies are noise)."""
    (entry,) = _explain_one(built, str(tiny_model_dir), "1:2", tmp_path)
    assert entry.explainer == f"local:{tiny_model_dir.resolve()}"
    assert entry.image_feature and entry.images_shown
    assert entry.status == "scored" or entry.status.startswith("unscored: ")
    ex = read_group(open_store(built.store.path), S.EXPLANATIONS, load=True)
    assert f"local:{tiny_model_dir.resolve()}" in set(ex.explainer.values)


def test_an_endpoint_that_takes_images_is_sent_the_marked_images(built: Built, tmp_path: Path) -> None:
    from sae_store.autointerp.loopback import serve_loopback

    with serve_loopback() as server:
        config = ExplainConfig(
            explainer=server.url, explainer_model="rule", images=True, features="0:1", n_held=2,
            cache=str(tmp_path / "c"),
        )  # fmt: skip
        (entry,) = explain(built.store.path, str(built.sae_dirs[0].parent), config)
    assert entry.explainer == f"http:{server.url}#rule"
    assert entry.image_feature and entry.images_shown
    # the explanation prompt carries each shown example's image, outlined where the feature fires
    assert server.images == [(448, 448)] * len(entry.shown)
    assert entry.status == "scored" and entry.explanation.startswith('Active on "image ')


def _text_only_copy(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny model's language model alone (a text-only causal LM folder) with its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, Gemma3ForCausalLM

    config = AutoConfig.from_pretrained(tiny_model_dir, local_files_only=True).text_config
    Gemma3ForCausalLM(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True).save_pretrained(out)
    return out


def test_a_text_only_model_folder_explains_image_features_from_text(
    built: Built, tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _text_only_copy(tiny_model_dir, tmp_path / "text-only")
    with caplog.at_level("INFO", logger="sae_store.autointerp.run"):
        (entry,) = _explain_one(built, str(folder), "0:1", tmp_path)
    assert entry.image_feature and not entry.images_shown
    assert (
        f"local:{folder.resolve()} takes no images: image-token features are explained from text contexts"
        in (caplog.text)
    )


def test_cli_refuses_a_wrong_endpoint_in_one_line(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    from sae_store.autointerp.loopback import serve_loopback
    from sae_store_cli.main import main

    with serve_loopback() as server:
        wrong = server.url.removesuffix("/v1")
        argv = [
            "explain",
            str(built.store.path),
            "--saes",
            str(built.sae_dirs[0].parent),
            "--explainer",
            wrong,
            "--features",
            "0:0",
        ]
        assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err == (
        f"sae-store explain: error: the explainer endpoint {wrong}/chat/completions answered HTTP 404 "
        "(Not Found); check the URL (the base URL ends in /v1) and --explainer-model"
    )
