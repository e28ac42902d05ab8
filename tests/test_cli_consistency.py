"""One command line: descriptions, shown defaults, one name and metavar per concept, pipeline order,
-v/-q anywhere, --json on every command printing only JSON, one-line argument errors naming the
closest option, old names kept for a release, no traceback on a closed pipe."""

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

from sae_store_cli.logs import setup_logging
from sae_store_cli.main import build_parser, main
from sae_store_cli.parser import PIPELINE_ORDER


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


def _takes_value(a: argparse.Action) -> bool:
    return a.nargs != 0 and not isinstance(a, argparse.BooleanOptionalAction)


def test_every_option_says_its_default_or_that_it_is_required() -> None:
    wrong = []
    for p in LEAVES:
        formatter = p._get_formatter()
        for a in _options(p):
            if isinstance(a, argparse._HelpAction):
                continue
            text = formatter._expand_help(a)
            says = re.search(r"\((default: .+|required)\)$", text)
            if _takes_value(a) or isinstance(a, argparse.BooleanOptionalAction):
                if not says or (a.required and not text.endswith("(required)")):
                    wrong.append(f"{p.prog} {a.option_strings[-1]}: {text}")
            elif "(default" in text:  # a plain flag is off unless given
                wrong.append(f"{p.prog} {a.option_strings[-1]}: {text}")
    assert wrong == []


#: Metavars of values that are not a choice: a count, a number, lists of them, and one name per concept.
METAVARS = {
    "N", "X", "N,N,...", "X,X,...", "S", "L", "I", "TEXT", "NAME", "KEY", "KEY=TEXT", "SIZE", "SPEC",
    "LANGS", "LANG", "LANG=DIR", "ROLES", "DEVICE", "DIR", "FILE", "CSV", "STORE", "RESULTS", "HOST", "A:B",
    "IDS", "SET", "[NAME=]DIR", "KEY=V,V,...", "ARCH", "PARTITION", "ACCOUNT", "HH:MM:SS", "LINE",
}  # fmt: skip


def test_metavars_name_the_kind_of_value() -> None:
    odd = []
    for p in LEAVES:
        for a in p._actions:
            if a.help == argparse.SUPPRESS or not _takes_value(a) or isinstance(a, argparse._HelpAction):
                continue
            metavar = a.metavar if a.metavar is not None else "|".join(a.choices or ()) or a.dest
            if metavar not in METAVARS and not re.fullmatch(r"[a-z0-9_.-]+(\|[a-z0-9_.-]+)+", str(metavar)):
                odd.append(f"{p.prog} {'/'.join(a.option_strings) or a.dest}: {metavar}")
    assert odd == []


def test_one_name_and_metavar_per_concept() -> None:
    flags = {(p.prog, s): a for p in LEAVES for a in _options(p) for s in a.option_strings}
    old = ("--restart", "--n-boot", "--samples", "--out", "--layers")
    hidden = {
        (p.prog, s)
        for p in LEAVES
        for a in p._actions
        if a.help == argparse.SUPPRESS
        for s in a.option_strings
    }
    assert {k for k in hidden if k[1] in old} == {
        ("sae-store encode", "--restart"), ("sae-store intervene", "--n-boot"),
        ("sae-store extract", "--samples"), ("sae-store analyze qualitative", "--samples"),
        ("sae-store analyze all", "--samples"), ("sae-store make-tiny-model", "--layers"),
        ("sae-store intervene", "--out"),
        *((f"sae-store analyze {a}", "--out") for a in
          ("bias", "crosslingual", "crosslayer", "interpret", "visual", "qualitative", "all")),
    }, "old names are hidden aliases"  # fmt: skip
    for (prog, flag), a in flags.items():
        if flag == "--layers":
            assert a.metavar == "SPEC", prog
        if flag == "--languages":
            assert a.metavar == "LANGS", prog
        if flag == "--samples":  # a samples table wherever it is taken
            assert a.metavar == "CSV", prog
        if flag == "--results":  # read by report/explore, written by analyze/intervene
            assert a.metavar == "DIR" and "results/ beside the store" in (a.help or ""), prog
        if flag in ("--dtype", "--precision"):  # one spelling of a precision
            assert "bf16" in a.metavar and "bfloat16" not in a.metavar, prog
    overwrites = [prog for (prog, flag) in flags if flag == "--overwrite"]
    assert {"sae-store encode", "sae-store caption", "sae-store make-tiny-model", "sae-store demo"} <= set(
        overwrites
    )
    without_json = [
        p.prog for p in LEAVES if ("--json" not in {s for a in p._actions for s in a.option_strings})
    ]
    assert without_json == ["sae-store explore"]  # a server: nothing to print when it is done


def test_old_names_still_work_for_one_release(capsys: pytest.CaptureFixture[str]) -> None:
    args = PARSER.parse_args(["encode", "s.zarr", "--saes", "d", "--restart"])
    assert args.overwrite is True
    assert capsys.readouterr().err == "sae-store encode: --restart is deprecated; use --overwrite\n"
    args = PARSER.parse_args(
        ["intervene", "s.zarr", "--saes", "d", "--mode", "ablate", "--n-boot", "7", "--out", "r"]
    )
    assert (args.bootstrap, args.results) == ("7", Path("r"))
    assert capsys.readouterr().err.splitlines() == [
        "sae-store intervene: --n-boot is deprecated; use --bootstrap",
        "sae-store intervene: --out is deprecated; use --results",
    ]
    assert PARSER.parse_args(["extract", "s.zarr", "--samples", "0:8"]).sample_range == "0:8"
    assert PARSER.parse_args(["analyze", "all", "s.zarr", "--out", "r"]).results == Path("r")
    assert PARSER.parse_args(["analyze", "qualitative", "s.zarr", "--samples", "a,b"]).sample_ids == "a,b"
    assert PARSER.parse_args(["make-tiny-model", "m", "--layers", "2"]).n_layers == "2"
    assert "--samples is deprecated; use --sample-range" in capsys.readouterr().err


def test_other_spellings_of_a_value_are_read_as_the_shown_one() -> None:
    from sae_store.intervene.config import InterventionConfig
    from sae_store.models.config import ModelRunConfig
    from sae_store.store.config import StoreConfig
    from sae_store_cli.options import build

    args = PARSER.parse_args(
        ["intervene", "s.zarr", "--saes", "d", "--mode", "neutralize", "--dtype", "bfloat16"]
    )
    assert build(args, InterventionConfig).mode == "neutralise"
    assert build(args, ModelRunConfig).dtype == "bf16"
    args = PARSER.parse_args(
        ["init", "s.zarr", "--samples", "x.csv", "--model", "m", "--precision", "float32"]
    )
    assert build(args, StoreConfig).precision == "fp32"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["train", "s.zarr", "--out", "x", "--layers", "0"],
         "sae-store train: error: unrecognized arguments: --layers 0; did you mean --layer? "
         "(`sae-store train --help` lists the options)"),
        (["train", "s.zarr", "--out", "x", "--layers", "0", "--archh", "relu"],
         "sae-store train: error: unrecognized arguments: --layers 0 --archh relu; did you mean --layer "
         "(for --layers), --arch (for --archh)? (`sae-store train --help` lists the options)"),
        (["encode", "s.zarr"],
         "sae-store encode: error: the following arguments are required: --saes "
         "(`sae-store encode --help` lists the options)"),
        (["status", "s.zarr", "--max-lines", "-1"],
         "sae-store status: error: argument --max-lines: must be a non-negative integer, got '-1' "
         "(`sae-store status --help` lists the options)"),
        (["explore", "s.zarr", "--port", "70000"],
         "sae-store explore: error: argument --port: must be a port number in 0..65535 (0: any free one), "
         "got '70000' (`sae-store explore --help` lists the options)"),
        (["nonsense"],
         "sae-store: error: argument COMMAND: invalid choice: 'nonsense' (choose from "
         + ", ".join(f"'{c}'" for c in PIPELINE_ORDER) + ") (`sae-store --help` lists the commands)"),
    ],
)  # fmt: skip
def test_argument_errors_are_one_line_naming_the_closest_option(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == line + "\n"


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
        for noisy in ("zarr", "asyncio", "urllib3", "fsspec", "matplotlib"):
            assert not logging.getLogger(noisy).isEnabledFor(logging.INFO), noisy
            assert logging.getLogger(noisy).isEnabledFor(logging.WARNING), noisy
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
        "from sae_store_cli.logs import setup_logging; "
        "setup_logging(build_parser().parse_args(['du', 'x'])); logging.getLogger('sae_store.x').info('hi')"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO sae_store\.x: hi\n", err), err


def test_library_notes_that_need_no_action_are_dropped(tmp_path: Path) -> None:
    code = (
        "import logging, zarr; from sae_store_cli.main import build_parser; "
        "from sae_store_cli.logs import setup_logging; "
        "setup_logging(build_parser().parse_args(['du', 'x'])); "
        f"zarr.open_group({str(tmp_path / 'g.zarr')!r}, mode='w').create_array('a', shape=(1,), dtype='f4'); "
        f"zarr.consolidate_metadata({str(tmp_path / 'g.zarr')!r}); "
        "fonts = logging.getLogger('matplotlib.font_manager'); "
        "fonts.warning('Matplotlib is building the font cache; this may take a moment.'); "
        "fonts.warning('findfont: Font family x not found.'); "
        "logging.getLogger('zarr.core').info('an INFO line of a library')"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert err.endswith(" WARNING matplotlib.font_manager: findfont: Font family x not found.\n")
    assert err.count("\n") == 1, err


def test_json_errors_are_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "status", "--config", str(tmp_path / "missing.yaml"), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["command"] == "jobs status" and "does not exist" in out["error"]
    assert main(["du", str(tmp_path / "nowhere.zarr"), "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)
    assert main(["train", "s.zarr", "--out", "x", "--layer", "0", "--k", "0", "--json"]) == 2
    assert json.loads(capsys.readouterr().out) == {
        "error": "--k must be a positive integer, got 0",
        "command": "train",
    }
    assert main(["train", "s.zarr", "--out", "x", "--bogus", "--json"]) == 2
    assert json.loads(capsys.readouterr().out) == {
        "error": "unrecognized arguments: --bogus (`sae-store train --help` lists the options)",
        "command": "train",
    }


def test_json_results_are_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-demo-data", str(tmp_path / "d"), "--n-images", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "captions": str(tmp_path / "d" / "captions.csv"),
        "images": str(tmp_path / "d" / "images"),
    }
    out = tmp_path / "c.yaml"
    assert main(["jobs", "example", "demo", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"written": str(out)}


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
