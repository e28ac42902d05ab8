"""``sae-store jobs render|submit|status|cancel``, ``sae-store pipeline`` and ``sae-store demo``."""

from __future__ import annotations

import argparse
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
from sae_store.jobs.config import PipelineConfig, example_text, load_config
from sae_store.jobs.demo import QUICK_TIME, demo_command, open_demo
from sae_store.resources import example_config, example_configs
from sae_store.selection import format_ranges

from .options import add_overwrite
from .parser import add_command, add_group, say, show


def _render(args: argparse.Namespace) -> int:
    """Write the sbatch script of every step (nothing is submitted)."""
    cfg = load_config(args.config)
    out = Path(args.out) if args.out else cfg.paths.run_dir / SCRIPT_DIR
    scripts = {p.step.name: render_script(cfg, p) for p in plan(cfg, slurm=True)}  # all or nothing
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in scripts.items():
        written.append(out / f"{name}.sbatch")
        written[-1].write_text(text, encoding="utf-8")
    show(args, {"scripts": written}, [str(p) for p in written])
    return 0


def _example(args: argparse.Namespace) -> int:
    """Write an example pipeline config to start from (demo or gemma3-4b).

    Print an example pipeline config shipped with sae-store, or copy it to --out; every setting it leaves out
    is listed after it with its default.
    """
    text = example_text(example_config(args.name), args.out)
    if args.out is None:
        show(args, {"config": text}, text.rstrip("\n"))
        return 0
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{str(args.out)!r} already exists; pass --overwrite to replace it")
    args.out.write_text(text, encoding="utf-8")
    show(
        args,
        {"written": args.out},
        f"wrote {args.out}: edit its paths and slurm section, then "
        f"`sae-store jobs render --config {args.out}`",
    )
    return 0


def _submit(args: argparse.Namespace) -> int:
    """Submit the chain of steps with afterok dependencies; resumes a run."""
    cfg = load_config(args.config)
    manifest = submit(cfg, config_file=args.config)
    lines = []
    for s in manifest.steps:
        if s.job_id is None:
            lines.append(f"{s.name:<20} complete, not submitted")
            continue
        tasks = f" array {format_ranges(s.tasks)}" if s.array else ""
        after = f" after {','.join(map(str, s.depends_on))}" if s.depends_on else ""
        lines.append(f"{s.name:<20} job {s.job_id}{tasks}{after}")
    lines.append(f"manifest: {cfg.paths.run_dir / 'pipeline_status' / 'manifest.json'}")
    lines.append(f"follow it with: sae-store jobs status --config {args.config}")
    show(args, manifest.to_dict(), lines)
    return 0


def _status(args: argparse.Namespace) -> int:
    """State of each step and array task, failures explained."""
    status = run_status(load_config(args.config), config_file=args.config)
    show(args, status.to_dict(), status.render())
    return 1 if status.failed else 0


def _cancel(args: argparse.Namespace) -> int:
    """Cancel the run's queued and running jobs."""
    ids = cancel(load_config(args.config))
    text = f"cancelled jobs {', '.join(map(str, ids))}" if ids else "no queued or running jobs in this run"
    show(args, {"cancelled": ids}, text)
    return 0


def _run_local(args: argparse.Namespace, cfg: PipelineConfig, rerun: str) -> int:
    from sae_store.store import completion, open_store, store_usage
    from sae_store.store.verify import verify_store
    from sae_store.units import format_bytes

    steps = run_pipeline(cfg, rerun=rerun, echo=lambda line: say(args, line))
    data: dict[str, Any] = {"steps": [s._asdict() for s in steps], "outputs": outputs(cfg)}
    lines = []
    store_path = cfg.paths.path("store")
    if (store_path / "zarr.json").exists():  # steps skipped by the config may leave no store
        store = open_store(store_path)
        grid, usage = completion(store), store_usage(store)
        data["store"] = {"complete": usage.fraction_complete, "disk_bytes": usage.disk_bytes,
                         "files": usage.files, "compression_ratio": usage.compression_ratio}  # fmt: skip
        lines += [
            "", grid.render(), f"{format_bytes(usage.disk_bytes)} in {usage.files:,} files, activations "
            f"compressed {usage.compression_ratio:.2f}x (`sae-store du {store_path}` breaks it down)", "",
        ]  # fmt: skip
        lines += [verify_store(store).render(), ""]
    lines += ["outputs:", *(f"  {name:<9} {path}" for name, path in outputs(cfg).items())]
    report = cfg.paths.path("report") / "report.html"
    if report.exists():
        data["report"] = report
        lines.append(f"open the report: {report}")
    show(args, data, lines)
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    """Run every step here, in order (complete steps are skipped)."""
    return _run_local(args, load_config(args.config), f"sae-store pipeline --config {args.config}")


def _demo(args: argparse.Namespace) -> int:
    """The demo pipeline on generated data and a tiny model, here.

    Build demo captions and images and a tiny random Gemma 3, then run every step of the pipeline on them
    (complete steps are skipped, so a rerun resumes). The folder records the demo's settings: a folder
    holding another demo (--quick or not) is refused unless --overwrite replaces it.
    """
    cfg = open_demo(args.out, quick=args.quick, overwrite=args.overwrite)
    code = _run_local(args, cfg, demo_command(args.out, args.quick))
    say(
        args,
        f"browse it: sae-store explore {cfg.paths.path('store')}  (then open the URL it prints; each feature "
        "page's test box runs the tiny model on an image you upload)",
    )
    return code


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", required=True, metavar="FILE", help="pipeline config (YAML, see configs/) (required)"
    )


def _add_jobs(subparsers: Any) -> None:
    sub = add_group(
        subparsers,
        "jobs",
        "render, submit, follow and cancel the pipeline on SLURM",
        description="The pipeline of a YAML config as SLURM array jobs that wait for each other.",
        dest="jobs_command",
    )
    p = add_command(sub, "example", _example)
    p.add_argument(
        "name",
        choices=sorted(example_configs()),
        metavar="NAME",
        help="which example: " + ", ".join(sorted(example_configs())),
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="write it here (default: print it)")
    add_overwrite(p, "replace FILE if it exists")

    p = add_command(sub, "render", _render)
    _config(p)
    p.add_argument("--out", metavar="DIR", help="folder for the scripts (default: RUN/scripts)")

    p = add_command(sub, "submit", _submit)
    _config(p)

    p = add_command(sub, "status", _status)
    _config(p)

    p = add_command(sub, "cancel", _cancel)
    _config(p)


def _add_pipeline(subparsers: Any) -> None:
    p = add_command(subparsers, "pipeline", _pipeline)
    _config(p)


def _add_demo(subparsers: Any) -> None:
    p = add_command(subparsers, "demo", _demo)
    p.add_argument(
        "--out", default="demo-output", metavar="DIR", help="folder of the demo run (default: demo-output)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="two layers, short training, no captions or interventions: checks an installation in "
        + QUICK_TIME,
    )
    add_overwrite(p, "remove the demo outputs already in DIR (another demo's) and start again")


COMMANDS = {"jobs": _add_jobs, "pipeline": _add_pipeline, "demo": _add_demo}
