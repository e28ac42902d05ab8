"""``--help``, ``--version`` and argument errors come before any heavy import (torch, zarr, xarray,
HoloViews, ...), so they answer at once; each error is one exact line, exit status 2, nothing written.

The command lines run in one fresh interpreter (a subprocess), which reports after each one which heavy
packages it has imported so far. How fast they answer is measured in ``benchmarks/bench_startup.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sae_store_cli.main import build_parser

HEAVY = ("torch", "zarr", "xarray", "holoviews", "panel", "transformers", "numpy", "pandas", "matplotlib",
         "scipy", "dask")  # fmt: skip

_RUN = """
import contextlib, io, json, sys
from sae_store_cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(), "heavy": heavy})
print(json.dumps(results))
"""


def _run_fresh(argvs: list[list[str]], cwd: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True, text=True, cwd=cwd, env=env, check=True, timeout=300,
    )  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _commands(p=None, words=()):  # type: ignore[no-untyped-def]
    import argparse

    p = p or build_parser()
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    yield list(words)
    for sub in subs:
        for name, child in sub.choices.items():
            yield from _commands(child, (*words, name))


def test_help_and_version_of_every_command_import_nothing_heavy(tmp_path: Path) -> None:
    commands = list(_commands())
    assert len(commands) > 30
    results = _run_fresh([*([*c, "--help"] for c in commands), ["--version"]], tmp_path)
    for argv, r in zip(commands, results, strict=False):
        assert r["code"] == 0 and r["out"].startswith("usage: sae-store"), argv
    assert results[-1]["out"].startswith("sae-store ")
    assert results[-1]["heavy"] == [], results[-1]["heavy"]
    assert list(tmp_path.iterdir()) == []


def _usage(command: str) -> str:
    return f" (`sae-store {command} --help` lists the options)"


#: One refusal (or more) per command: (argv, the message of the one line on stderr, after
#: ``sae-store COMMAND: error: ``). Argument errors end by naming the command's --help.
REFUSALS: list[tuple[list[str], str]] = [
    (["demo", "--quick", "--layers", "0"],
     "unrecognized arguments: --layers 0" + _usage("demo")),
    (["make-demo-data", "d", "--n-images", "4"],
     "--n-images must be an integer >= 8, got 4"),
    (["make-tiny-model", "m", "--hidden", "40"],
     "--hidden must be a multiple of 16 (the head size used for it), got 40; try 64 (tiny) or "
     "512 (medium)"),
    (["make-tiny-model", "m", "--n-layers", "0"],
     "--n-layers must be a positive integer, got 0"),
    (["prepare", "--captions", "c.csv", "--images", "i", "--out", "o", "--seed", "-1"],
     "--seed must be a non-negative integer, got -1"),
    (["init", "s.zarr", "--samples", "x.csv", "--model", "m", "--compressor", "zstd", "--shuffle", "bit"],
     "--shuffle 'bit' applies only to Blosc codecs, not to 'zstd'; leave --shuffle unset"),
    (["init", "s.zarr", "--samples", "x.csv", "--model", "m", "--languages", "fr"],
     "unknown language key(s) ['fr']; known: ['en', 'ar'] (add a prompt for a new language at "
     "`sae-store init` with --prompt KEY=TEXT)"),
    (["init", "s.zarr", "--samples", "x.csv", "--model", "m", "--layers", "3-1"],
     "--layers '3-1': range '3-1' runs backwards; write it as '1-3'"),
    (["extract", "s.zarr", "--device", "gpu"],
     "--device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    (["extract", "s.zarr", "--sample-range", "x"],
     "--sample-range must look like 'A:B' (e.g. '0:64'), got 'x'"),
    (["extract", "s.zarr", "--task-index", "3", "--task-count", "3"],
     "--task-index must be in 0..2 for --task-count 3, got 3"),
    (["extract", "s.zarr", "--dtype", "float64"],
     "--dtype must be one of ['auto', 'bf16', 'fp32', 'fp16'], got 'float64'"),
    (["append", "s.zarr"],
     "the following arguments are required: --samples" + _usage("append")),
    (["unlock"],
     "the following arguments are required: STORE" + _usage("unlock")),
    (["migrate", "a.zarr", "b.zarr"],
     "unrecognized arguments: b.zarr" + _usage("migrate")),
    (["status", "s.zarr", "--max-lines", "x"],
     "argument --max-lines: must be a non-negative integer, got 'x'" + _usage("status")),
    (["du", "s.zarr", "--quota=0"],
     "size '0' must be positive"),
    (["verify", "s.zarr", "--reapir"],
     "unrecognized arguments: --reapir; did you mean --repair?" + _usage("verify")),
    (["train", "s.zarr", "--out", "x", "--layers", "0"],
     "unrecognized arguments: --layers 0; did you mean --layer?" + _usage("train")),
    (["train", "s.zarr", "--out", "x", "--layer", "0", "--arch", "bogus"],
     "--arch must be one of ['topk', 'batchtopk', 'relu', 'jumprelu', 'matryoshka_batchtopk'],"
     " got 'bogus'"),
    (["train", "s.zarr", "--out", "x", "--layer", "0", "--lr-warmup-steps", "500", "--steps", "100"],
     "the learning-rate schedule (500 warm-up steps + 20 decay steps) is longer than the run "
     "(100 steps); lower --lr-warmup-steps or --lr-decay-fraction, or raise --steps"),
    (["encode", "s.zarr", "--saes", "x", "--roles", "nothing"],
     "--roles must be distinct names from ['image', 'text', 'special'] (or 'all' for image and"
     " text), got ['nothing']"),
    (["encode", "s.zarr", "--saes", "x", "--layers", "1,1"],
     "--layers '1,1' names layer(s) [1] more than once; give each layer once"),
    (["export-saes", "--saes", "x", "--layout", "bogus", "--out", "o"],
     "argument --layout: invalid choice: 'bogus' (choose from 'sparsify', 'gemma-scope')"
     + _usage("export-saes")),
    (["evaluate", "s.zarr", "--saes", "x", "--probe-c", "0"],
     "--probe-c must be a positive number, got 0.0"),
    (["analyze", "bias", "s.zarr", "--alpha", "2"],
     "--alpha must be in (0, 1), got 2.0"),
    (["analyze", "crosslingual", "s.zarr", "--saes-by-language", "en=a"],
     "--saes-by-language takes two LANG=DIR items (e.g. en=saes_en ar=saes_ar), got ['en=a']"),
    (["analyze", "qualitative", "s.zarr", "--sample-ids", ","],
     "--sample-ids needs at least one comma-separated name, got ','"),
    (["analyze", "all", "s.zarr", "--cluster", "slurm", "--workers", "0"],
     "--workers must be a positive integer, got 0"),
    (["caption", "s.zarr", "--dtype", "bf"],
     "--dtype must be one of ['auto', 'bf16', 'fp32', 'fp16'], got 'bf'"),
    (["intervene", "s.zarr", "--saes", "x", "--layer", "0", "--mode", "ablate", "--controls", "5"],
     "--controls must be 0 (no controls) or at least 10, got 5"),
    (["intervene", "s.zarr", "--saes", "x", "--layer", "0", "--mode", "amplify", "--alpha", "0"],
     "--alpha must be > 0 for --mode 'amplify', got 0.0; use --mode 'ablate' to remove "
     "features (alpha = 0)"),
    (["intervene", "s.zarr", "--saes", "x", "--mode", "neutralize"],
     "no layer given: pass --layer L, or run as a SLURM array task (--array=<layers>)"),
    (["intervene-summary"],
     "the following arguments are required: RESULTS" + _usage("intervene-summary")),
    (["report", "s.zarr", "--out", "r", "--inode-quota=1.5"],
     "file count '1.5' must be a positive whole number below 1e18, e.g. 1000000 or 1e6"),
    (["explore", "s.zarr", "--port", "65536"],
     "argument --port: must be a port number in 0..65535 (0: any free one), got '65536'" + _usage("explore")),
    (["pipeline"],
     "the following arguments are required: --config" + _usage("pipeline")),
    (["jobs", "example", "nonsense"],
     "argument NAME: invalid choice: 'nonsense' (choose from 'demo', 'gemma3-4b')" + _usage("jobs example")),
    (["jobs", "render", "--config", "missing.yaml"],
     "config file 'missing.yaml' does not exist; `sae-store jobs example gemma3-4b --out FILE`"
     " writes an example to start from"),
    (["jobs", "submit", "--config", "bad.yaml"],
     "sae.k must be a positive integer, got 0"),
    (["jobs", "status", "--config", "bad.yaml"],
     "sae.k must be a positive integer, got 0"),
    (["jobs", "cancel", "--config", "bad.yaml"],
     "sae.k must be a positive integer, got 0"),
]  # fmt: skip


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    work = tmp_path_factory.mktemp("refusals")
    (work / "bad.yaml").write_text("paths: {root: run}\nsae: {k: 0}\n")
    return _run_fresh([argv for argv, _ in REFUSALS], work), work


@pytest.mark.parametrize(("argv", "line"), REFUSALS, ids=[" ".join(a[:2]) for a, _ in REFUSALS])
def test_argument_errors_come_before_any_heavy_import(
    argv: list[str], line: str, refusals: tuple[list[dict], Path]
) -> None:
    results, work = refusals
    r = results[REFUSALS.index((argv, line))]
    command = " ".join(argv[:2]) if argv[0] in ("analyze", "jobs") else argv[0]
    assert (r["code"], r["err"], r["out"]) == (2, f"sae-store {command}: error: {line}\n", "")
    assert r["heavy"] == []
    assert sorted(p.name for p in work.iterdir()) == ["bad.yaml"]  # nothing written


def test_every_command_has_a_refusal_above() -> None:
    named = {" ".join(c) for c in _commands()} - {"", "analyze", "jobs"}
    refused = {" ".join(a[:2]) if a[0] in ("analyze", "jobs") else a[0] for a, _ in REFUSALS}
    assert named - refused <= {f"analyze {a}" for a in ("interpret", "visual", "crosslayer")}
