"""SLURM overhead and array scaling on a real single-node SLURM (started here, as the tests do).

1. The demo pipeline (the quick variant of the end-to-end tests: short SAE training, no captions,
   interventions or report) from ``init`` to the analyses: wall time of a local ``pipeline`` run vs
   from ``jobs submit`` until the last job has left the queue, side by side on the same inputs.
2. Extraction of the demo store (44 samples, 6 shard blocks, 4 layers x 2 languages) as an array
   of 1, 2 and 4 tasks, from submission until the array has left the queue.

Needs root and the Debian SLURM packages (installed if missing). Run: ``python benchmarks/bench_slurm.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the single-node SLURM lives with the tests' fixtures

from benchmarks.run import result  # noqa: E402
from sae_store.jobs import Manifest, run_pipeline, submit  # noqa: E402
from sae_store.jobs.steps import step_names  # noqa: E402
from tests.jobs.conftest import LocalSlurm, copy_inputs, fast_config, wait_for  # noqa: E402

_INPUTS = ("demo-data", "tiny-model", "prepare")
_WROTE = re.compile(r"wrote \d+ of \d+ blocks .* in ([\d.]+) s \(")


def _quiet(line: str) -> None:
    pass


@contextmanager
def _silenced() -> Iterator[None]:
    """Send this process's (and its children's) stdout and stderr to /dev/null: the steps' progress
    output is not what is measured."""
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _only(*steps: str) -> list[str]:
    return [n for n in step_names() if n not in steps]


def _timed_submit(root: Path, **overrides: Any) -> tuple[float, Manifest]:
    cfg = fast_config(root, **overrides)
    start = time.perf_counter()
    manifest = submit(cfg)
    wait_for(manifest, timeout=1800)
    return time.perf_counter() - start, manifest


def _extraction_seconds(root: Path, manifest: Manifest) -> list[float]:
    """Per array task, the time extraction itself reported (model loaded, blocks written)."""
    (step,) = [s for s in manifest.steps if s.name == "extract"]
    logs = [root / "logs" / f"extract_{step.job_id}_{task}.out" for task in step.tasks]
    return [float(m.group(1)) for log in logs for m in [_WROTE.search(log.read_text())] if m]


def main() -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    old_conf = os.environ.get("SLURM_CONF")
    results: dict[str, Any] = {}
    try:
        inputs = base / "inputs"
        with _silenced():
            run_pipeline(fast_config(inputs, skip=_only(*_INPUTS)), echo=_quiet)
        local = base / "local"
        copy_inputs(inputs, local)
        start = time.perf_counter()
        with _silenced():
            run_pipeline(fast_config(local), echo=_quiet)
        results["local_pipeline_s"] = round(time.perf_counter() - start, 1)

        with LocalSlurm() as slurm:
            os.environ["SLURM_CONF"] = str(slurm.conf)
            on_slurm = base / "slurm"
            copy_inputs(inputs, on_slurm)
            results["slurm_pipeline_s"] = round(_timed_submit(on_slurm)[0], 1)
            results["slurm_overhead_ratio"] = round(
                results["slurm_pipeline_s"] / results["local_pipeline_s"], 2
            )

            extract: dict[int, float] = {}
            work: dict[int, float] = {}
            for tasks in (1, 2, 4):
                root = base / f"extract-{tasks}"
                copy_inputs(inputs, root)
                with _silenced():
                    run_pipeline(fast_config(root, skip=_only(*_INPUTS, "init")), echo=_quiet)
                seconds, manifest = _timed_submit(root, skip=_only("extract"), slurm={"tasks": tasks})
                extract[tasks] = round(seconds, 1)
                work[tasks] = round(max(_extraction_seconds(root, manifest)), 1)
            results["extract_s_by_tasks"] = extract
            results["extract_longest_task_work_s_by_tasks"] = work
            results["extract_speedup_2_tasks"] = round(extract[1] / extract[2], 2)
            results["extract_speedup_4_tasks"] = round(extract[1] / extract[4], 2)
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        shutil.rmtree(base, ignore_errors=True)

    lines = [
        "Demo pipeline, init to analyses (quick variant of the end-to-end tests), same inputs, on a real "
        "single-node SLURM started by the benchmark:",
        "",
        "| run | seconds |",
        "| --- | --- |",
        f"| local `sae-store pipeline` | {results['local_pipeline_s']:.1f} |",
        f"| `sae-store jobs submit` until all jobs finished | {results['slurm_pipeline_s']:.1f} |",
        f"| **SLURM / local** | **{results['slurm_overhead_ratio']:.2f}x** |",
        "",
        f"Extraction as an array on {os.cpu_count()} CPUs (submission until the array left the queue):",
        "",
        "| array tasks | seconds | speed-up vs 1 task | longest task's own extraction time |",
        "| --- | --- | --- | --- |",
    ]
    for tasks, seconds in extract.items():
        lines.append(f"| {tasks} | {seconds:.1f} | {extract[1] / seconds:.2f}x | {work[tasks]:.1f} s |")
    lines += ["", "The rest of each task's time is Python/torch/model start-up and scheduling."]
    return result("SLURM: submission overhead and array scaling", lines, **results)


if __name__ == "__main__":
    main()
