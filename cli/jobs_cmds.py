"""``sae-store jobs render|submit|status|cancel``, ``sae-store pipeline`` and ``sae-store demo``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sae_store.errors import ConfigError
from sae_store.jobs import (
    SCRIPT_DIR,
    cancel,
    outputs,
    plan,
    render_script,
    run_pipeline,
    run_status,
    submit,
)
from sae_store.jobs.config import PipelineConfig, demo_config, example_text, load_config
from sae_store.resources import example_config, example_configs
from sae_store.selection import format_ranges

from .options import add_command, add_group, add_json, add_overwrite


def _render(args: argparse.Namespace) -> int:
    """Write the sbatch script of every step (nothing is submitted)."""
    cfg = load_config(args.config)
    out = Path(args.out) if args.out else cfg.paths.run_dir / SCRIPT_DIR
    scripts = {p.step.name: render_script(cfg, p) for p in plan(cfg, slurm=True)}  # all or nothing
    out.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        path = out / f"{name}.sbatch"
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0


def _example(args: argparse.Namespace) -> int:
    """Write an example pipeline config to start from (demo or gemma3-4b).

    Print an example pipeline config shipped with sae-store, or copy it to --out; every setting it leaves out
    is listed after it with its default.
    """
    text = example_text(example_config(args.name))
    if args.out is None:
        print(text, end="")
        return 0
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{str(args.out)!r} already exists; pass --overwrite to replace it")
    args.out.write_text(text, encoding="utf-8")
    print(
        f"wrote {args.out}: edit its paths and slurm section, "
        f"then `sae-store jobs render --config {args.out}`"
    )
    return 0


def _submit(args: argparse.Namespace) -> int:
    """Submit the chain of steps with afterok dependencies; resumes a run."""
    cfg = load_config(args.config)
    manifest = submit(cfg, config_file=args.config)
    for s in manifest.steps:
        if s.job_id is None:
            print(f"{s.name:<20} complete, not submitted")
            continue
        tasks = f" array {format_ranges(s.tasks)}" if s.array else ""
        after = f" after {','.join(map(str, s.depends_on))}" if s.depends_on else ""
        print(f"{s.name:<20} job {s.job_id}{tasks}{after}")
    print(f"manifest: {cfg.paths.run_dir / 'pipeline_status' / 'manifest.json'}")
    print(f"follow it with: sae-store jobs status --config {args.config}")
    return 0


def _status(args: argparse.Namespace) -> int:
    """State of each step and array task, failures explained."""
    status = run_status(load_config(args.config), config_file=args.config)
    print(json.dumps(status.to_dict(), indent=2) if args.json else status.render())
    return 1 if status.failed else 0


def _cancel(args: argparse.Namespace) -> int:
    """Cancel the run's queued and running jobs."""
    ids = cancel(load_config(args.config))
    print(f"cancelled jobs {', '.join(map(str, ids))}" if ids else "no queued or running jobs in this run")
    return 0


def _run_local(cfg: PipelineConfig, rerun: str) -> int:
    from sae_store.store import completion, open_store, store_usage
    from sae_store.store.usage import render_usage
    from sae_store.store.verify import verify_store

    run_pipeline(cfg, rerun=rerun)
    store_path = cfg.paths.path("store")
    if (store_path / "zarr.json").exists():  # steps skipped by the config may leave no store
        store = open_store(store_path)
        print(f"\n$ sae-store status {store_path}\n{completion(store).render()}")
        print(f"\n$ sae-store du {store_path}\n{render_usage(store_usage(store))}")
        print(f"\n$ sae-store verify {store_path}\n{verify_store(store).render()}\n")
    print("outputs:")
    for name, path in outputs(cfg).items():
        print(f"  {name:<9} {path}")
    report = cfg.paths.path("report") / "report.html"
    if report.exists():
        print(f"open the report: {report}")
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    """Run every step here, in order (complete steps are skipped)."""
    return _run_local(load_config(args.config), f"sae-store pipeline --config {args.config}")


def _demo(args: argparse.Namespace) -> int:
    """The demo pipeline on generated data and a tiny model, here."""
    quick = " --quick" if args.quick else ""
    cfg = demo_config(args.out, quick=args.quick)
    code = _run_local(cfg, f"sae-store demo --out {args.out}{quick}")
    print(f"browse it: sae-store explore {cfg.paths.path('store')}  (then open the URL it prints)")
    return code


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="pipeline config (YAML, see configs/)")


def _add_jobs(subparsers: Any) -> None:
    sub = add_group(
        subparsers,
        "jobs",
        "render, submit, follow and cancel the pipeline on SLURM",
        description="The pipeline of a YAML config as SLURM array jobs that wait for each other.",
        dest="jobs_command",
    )
    p = add_command(sub, "example", _example)
    p.add_argument("name", choices=sorted(example_configs()), help="which example")
    p.add_argument("--out", type=Path, metavar="FILE", help="write it here (default: print it)")
    add_overwrite(p, "replace FILE if it exists")

    p = add_command(sub, "render", _render)
    _config(p)
    p.add_argument("--out", metavar="DIR", help="folder for the scripts (default: RUN/scripts)")

    p = add_command(sub, "submit", _submit)
    _config(p)

    p = add_command(sub, "status", _status)
    _config(p)
    add_json(p)

    p = add_command(sub, "cancel", _cancel)
    _config(p)


def _add_pipeline(subparsers: Any) -> None:
    p = add_command(subparsers, "pipeline", _pipeline)
    _config(p)


def _add_demo(subparsers: Any) -> None:
    p = add_command(subparsers, "demo", _demo)
    p.add_argument("--out", default="demo-output", help="folder of the demo run (default: demo-output)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="two layers, short training, no captions or interventions: checks an installation in ~1 min",
    )


COMMANDS = {"jobs": _add_jobs, "pipeline": _add_pipeline, "demo": _add_demo}
