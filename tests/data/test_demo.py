from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sae_store.data.demo import make_demo_data
from sae_store.data.prepare import prepare_samples
from sae_store.errors import ConfigError

RED, BLUE = (200, 40, 40), (40, 70, 200)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_byte_identical_for_a_seed(tmp_path: Path, demo_dir: Path) -> None:
    again = make_demo_data(tmp_path / "again")
    assert _files(again) == _files(demo_dir)
    other = make_demo_data(tmp_path / "other", seed=1)
    assert _files(other) != _files(demo_dir)


def test_captions_csv_shape(demo_dir: Path) -> None:
    table = pd.read_csv(demo_dir / "captions.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == ["image", "en_caption", "ar_caption"]
    assert len(table) == 48 * 3 + 2
    assert len(list((demo_dir / "images").glob("*.png"))) == 48


def test_prepare_on_demo_data(tmp_path: Path, demo_dir: Path) -> None:
    result = prepare_samples(demo_dir / "captions.csv", demo_dir / "images", tmp_path / "out")
    report = result.report
    assert report["rejected_counts"] == {"corrupt image": 3, "missing file": 1, "empty image name": 1}
    assert report["label_counts_before"] == {"male": 22, "female": 22, "ambiguous": 2, "unknown": 1}
    assert report["label_counts_after"] == {"male": 22, "female": 22, "ambiguous": 0, "unknown": 0}
    assert len(report["excluded_unlabelled"]) == 3
    sub = prepare_samples(demo_dir / "captions.csv", demo_dir / "images", tmp_path / "sub", num_samples=10)
    assert sub.report["label_counts_after"] == {"male": 5, "female": 5, "ambiguous": 0, "unknown": 0}


def test_visual_cue_correlates_with_label(tmp_path: Path, demo_dir: Path) -> None:
    samples = prepare_samples(demo_dir / "captions.csv", demo_dir / "images", tmp_path / "out").samples
    redder = []
    for path in samples["image_path"]:
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        red = int((pixels == RED).all(axis=1).sum())
        blue = int((pixels == BLUE).all(axis=1).sum())
        redder.append(red > blue)
    female = samples["gender"].eq("female").to_numpy()
    agreement = float(np.mean(np.array(redder) == female))
    assert 0.7 <= agreement < 1.0  # strong but not perfect


def test_too_few_images(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"n_images must be an integer >= 8, got 5"):
        make_demo_data(tmp_path, n_images=5)
