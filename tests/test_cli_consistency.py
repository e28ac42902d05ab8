"""One command line: descriptions, shown defaults, one name and metavar per concept, pipeline order,
-v/-q anywhere, --json that prints only JSON, no traceback on a closed pipe."""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sae_store_cli.main import build_parser, main
from sae_store_cli.options import PIPELINE_ORDER, setup_logging


def _leaves(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield p
        return
    for child in subs[0].choices.values():
        yield from _leaves(child)


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings and a.help != argparse.SUPPRESS]


PARSER = build_parser()
LEAVES = list(_leaves(PARSER))


def test_every_command_has_a_description() -> None:
    assert len(LEAVES) > 25
    missing = [p.prog for p in LEAVES if not p.description]
    assert missing == []


def test_every_default_is_shown() -> None:
    hidden = []
    for p in LEAVES:
        text = p.format_help()
        for a in _options(p):
            empty = a.default is None or a.default is False or a.default in (argparse.SUPPRESS, [], ())
            if not empty and not isinstance(a, argparse._HelpAction):
                formatter = p._get_formatter()
                if "default" not in formatter._expand_help(a).lower():
                    hidden.append(f"{p.prog} {a.option_strings[-1]}")
        assert "%(default)" not in text
    assert hidden == []


def test_one_name_and_metavar_per_concept() -> None:
    flags = {(p.prog, s): a for p in LEAVES for a in _options(p) for s in a.option_strings}
    assert not [k for k in flags if k[1] in ("--restart", "--n-boot")], "old names are hidden aliases"
    for (prog, flag), a in flags.items():
        if flag == "--layers":
            assert a.metavar == "SPEC", prog
        if flag == "--languages":
            assert a.metavar == "LANGS", prog
    overwrites = [prog for (prog, flag) in flags if flag == "--overwrite"]
    assert {"sae-store encode", "sae-store caption", "sae-store make-tiny-model"} <= set(overwrites)


def test_old_names_still_work_for_one_release(capsys: pytest.CaptureFixture[str]) -> None:
    args = PARSER.parse_args(["encode", "s.zarr", "--saes", "d", "--restart"])
    assert args.overwrite is True
    assert "--restart is deprecated; use --overwrite" in capsys.readouterr().err
    args = PARSER.parse_args(["intervene", "s.zarr", "--saes", "d", "--mode", "ablate", "--n-boot", "7"])
    assert args.bootstrap == 7


def test_commands_are_listed_in_pipeline_order() -> None:
    sub = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))
    listed = [a.dest for a in sub._choices_actions]
    known = [name for name in listed if name in PIPELINE_ORDER]
    assert known == sorted(known, key=PIPELINE_ORDER.index)
    assert listed.index("prepare") < listed.index("init") < listed.index("extract") < listed.index("train")
    assert (
        listed.index("encode") < listed.index("analyze") < listed.index("intervene") < listed.index("report")
    )


@pytest.mark.parametrize("argv", [["-v", "du", "x"], ["du", "x", "-v"], ["du", "-q", "x"], ["-q", "du", "x"]])
def test_verbosity_before_or_after_the_command(argv: list[str]) -> None:
    args = PARSER.parse_args(argv)
    assert args.verbose is ("-v" in argv) and args.quiet is ("-q" in argv)


def test_verbose_turns_on_only_our_debug_messages() -> None:
    root, ours = logging.getLogger(), logging.getLogger("sae_store")
    saved = (root.handlers[:], root.level, ours.level)
    try:
        setup_logging(PARSER.parse_args(["du", "x", "-v"]))
        assert logging.getLogger("sae_store.extract").isEnabledFor(logging.DEBUG)
        for noisy in ("zarr", "asyncio", "urllib3", "fsspec"):
            assert not logging.getLogger(noisy).isEnabledFor(logging.DEBUG), noisy
        setup_logging(PARSER.parse_args(["du", "x", "-q"]))
        assert not logging.getLogger("sae_store.extract").isEnabledFor(logging.INFO)
        assert logging.getLogger("sae_store.extract").isEnabledFor(logging.WARNING)
        setup_logging(PARSER.parse_args(["du", "x"]))
        assert logging.getLogger("sae_store.extract").isEnabledFor(logging.INFO)
    finally:  # leave logging as pytest set it up
        root.handlers[:], (root.level, ours.level) = saved[0], saved[1:]


def test_log_lines_carry_the_date() -> None:
    code = (
        "import logging, sys; from sae_store_cli.main import build_parser; "
        "from sae_store_cli.options import setup_logging; "
        "setup_logging(build_parser().parse_args(['du', 'x'])); logging.getLogger('sae_store.x').info('hi')"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO sae_store\.x: hi\n", err), err


def test_json_errors_are_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "status", "--config", str(tmp_path / "missing.yaml"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "jobs" and "does not exist" in out["error"]
    assert main(["du", str(tmp_path / "nowhere.zarr"), "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)


def test_json_into_a_closed_pipe_has_no_traceback() -> None:
    exe = Path(sys.executable).parent / "sae-store"
    proc = subprocess.Popen(
        [exe, "jobs", "example", "gemma3-4b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head` that has already left
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_extract_defaults_to_the_stores_model() -> None:
    (extract,) = [p for p in LEAVES if p.prog == "sae-store extract"]
    model = next(a for a in extract._actions if "--model" in a.option_strings)
    assert not model.required and "recorded in the store" in (model.help or "")


def test_no_progress_bars_off_a_terminal(tmp_path: Path) -> None:
    # what a SLURM .out file receives: no carriage returns, neither ours nor Hugging Face's
    exe = Path(sys.executable).parent / "sae-store"
    out = subprocess.run([exe, "make-tiny-model", str(tmp_path / "m")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stdout + out.stderr
