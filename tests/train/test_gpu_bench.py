"""benchmarks/gpu_train.py runs end to end on the CPU with --tiny (the CUDA run uses the same code)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_train


@pytest.mark.slow
def test_tiny_run_measures_every_width_and_precision(tmp_path):
    out = tmp_path / "gpu.json"
    result = gpu_train.main(["--tiny", "--json", str(out)])
    rows = result["rows"]
    assert [(r["d_sae"], r["bf16"]) for r in rows] == [(256, False), (256, True), (512, False), (512, True)]
    for r in rows:
        assert len(r["ratios"]) == gpu_train.TINY.blocks and all(x > 0 for x in r["ratios"])
        assert r["streamed_tokens_per_s"] > 0 and r["resident_tokens_per_s"] > 0 and math.isfinite(r["fvu"])
    assert json.loads(out.read_text())["rows"] == rows
    assert "| 512 | bf16 autocast |" in result["markdown"]
