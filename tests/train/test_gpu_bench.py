"""benchmarks/gpu_train.py runs end to end on the CPU with --tiny (the CUDA run uses the same code)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import gpu_train


@pytest.mark.slow
def test_tiny_run_measures_every_width_precision_and_data_path(tmp_path):
    out = tmp_path / "gpu.json"
    result = gpu_train.main(["--tiny", "--json", str(out)])
    rows = result["rows"]
    assert [(r["d_sae"], r["bf16"]) for r in rows] == [(256, False), (256, True), (512, False), (512, True)]
    for r in rows:
        assert len(r["blocks"]) == gpu_train.TINY.blocks and math.isfinite(r["fvu"])
        for side in ("resident", "streamed"):
            assert len(r[side]["ratios"]) == gpu_train.TINY.blocks and all(x > 0 for x in r[side]["ratios"])
        assert all(r["tokens_per_s"][side] > 0 for side in gpu_train.SIDES)
    assert len(result["sync"]["ratios"]) == gpu_train.TINY.blocks and result["sync"]["median"] > 0
    multi = result["multi_sae"]
    assert multi["n_saes"] == len(gpu_train.PASS_KS) and multi["steps"] == gpu_train.TINY.pass_steps
    assert all(len(multi["rounds"][side]) == 2 for side in ("pass", "separate"))
    assert json.loads(out.read_text())["rows"] == rows
    assert "| 512 | bf16 autocast |" in result["markdown"]
    assert "from one streamed pass vs one pass each" in result["markdown"]
