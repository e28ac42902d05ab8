"""``sae-store report``: the three documents, sections that say what to run, numbers as written."""

from __future__ import annotations

import json
import shlex

import pytest

from sae_store.errors import DataError, SaeStoreError
from sae_store.report import ReportResult, build_report, load_inputs
from sae_store.report.html import external_references
from sae_store.store import ActivationStore, completion, store_usage
from sae_store_cli.main import build_parser, main

from .conftest import results_dir


def _summary(result: ReportResult) -> dict:
    return json.loads(result.summary.read_text())


def test_bare_store_report_lists_what_exists_and_what_to_run(
    bare_store: ActivationStore, bare_report: ReportResult
):
    summary = _summary(bare_report)["sections"]
    assert bare_report.sections["completeness"] == "partial"
    assert bare_report.sections["bias_layers"] == "not run" and bare_report.sections["volcano"] == "not run"
    steps = {s["step"]: s for s in summary["completeness"]["steps"]}
    assert steps["extract"]["state"] == "partial"
    assert steps["extract"]["detail"] == "66.7% written; en layers 2: samples 0:40; ar layers 2: samples 0:40"
    assert steps["extract"]["commands"] == [f"sae-store extract {bare_store.path} --model MODEL_DIR"]
    results = bare_store.path.parent / "results"
    assert steps["analyze bias"] == {
        "step": "analyze bias",
        "state": "not run",
        "detail": "no results",
        "commands": [f"sae-store analyze bias {bare_store.path} --results {results}"],
    }
    assert summary["completeness"]["extract_remaining"] == completion(bare_store).remaining()
    md = bare_report.markdown.read_text()
    assert "**Not run yet.**" in md and f"sae-store analyze bias {bare_store.path} --results {results}" in md
    html = bare_report.html.read_text()
    assert external_references(html) == [] and "Not run yet." in html


def test_usage_numbers_are_those_of_du(bare_store: ActivationStore, bare_report: ReportResult):
    usage = _summary(bare_report)["sections"]["store_usage"]
    du = store_usage(bare_store)
    assert usage["disk_bytes"] == du.disk_bytes and usage["files"] == du.files
    assert usage["compression_ratio"] == pytest.approx(du.compression_ratio)
    assert {p.name for p in bare_report.figures} == {
        "completeness.png",
        "store_usage.png",
        "store_usage_layers.png",
    }
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in bare_report.figures)


def test_bias_numbers_are_copied_from_the_results_file(
    full_store: ActivationStore, full_report: ReportResult
):
    payload = json.loads((results_dir(full_store) / "comprehensive_analysis_results.json").read_text())
    section = _summary(full_report)["sections"]["bias_layers"]
    rows = {(r["language"], r["layer"]): r for r in section["per_layer"]}
    assert len(rows) == 6
    checked = 0
    for lang, block in payload["by_language"].items():
        for layer, entry in block["layers"].items():
            row = rows[(lang, int(layer))]
            assert row["significant"] == entry["n_significant"]
            assert row["max |d|"] == entry["max_abs_d"]
            for direction in ("male", "female"):
                top = (
                    entry[f"{direction}_biased_features"] or [{"d": None, "ci_low": None, "ci_high": None}]
                )[0]
                shown = tuple(row[f"top {direction} {k}"] for k in ("d", "CI low", "CI high"))
                assert shown == (top["d"], top["ci_low"], top["ci_high"])
                checked += top["d"] is not None
    assert checked >= 8  # most layers have a significant feature in each direction
    volcano = _summary(full_report)["sections"]["volcano"]
    assert volcano["significant_per_layer_language"] == {
        f"{layer}/{lang}": e["n_significant"]
        for lang, b in payload["by_language"].items()
        for layer, e in b["layers"].items()
    }
    assert {"volcano.png", "bias_effects_per_layer.png", "bias_significant_per_layer.png"} <= {
        p.name for p in full_report.figures
    }


def test_output_folder_that_cannot_be_written_is_refused(bare_store: ActivationStore, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(
        SaeStoreError, match=r"cannot write the report to '.*a-file/report': .*choose a writable folder"
    ):
        build_report(load_inputs(bare_store.path), blocker / "report")


def test_corrupt_results_file_is_named(bare_store: ActivationStore, tmp_path):
    (tmp_path / "comprehensive_analysis_results.json").write_text("{not json")
    with pytest.raises(
        DataError, match=r"results file '.*comprehensive_analysis_results.json' is unreadable"
    ):
        load_inputs(bare_store.path, results_dir=tmp_path)


def test_saes_argument_must_be_a_folder(bare_store: ActivationStore, tmp_path):
    (tmp_path / "saes").write_text("")
    with pytest.raises(SaeStoreError, match=r"--saes '.*saes' is not a folder"):
        load_inputs(bare_store.path, saes_dir=tmp_path / "saes")


def test_cli_prints_the_report_path(bare_store: ActivationStore, tmp_path, capsys):
    assert main(["report", str(bare_store.path), "--out", str(tmp_path / "rep"), "--quota", "1K"]) == 0
    out = capsys.readouterr().out
    assert f"report:   {tmp_path / 'rep' / 'report.html'}" in out
    assert (
        "not run yet: sae_quality, evaluation, bias_layers, volcano, crosslingual, features, qualitative, "
        "interventions" in out
    )
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())["sections"]["store_usage"]
    assert summary["quota"] == 1000 and summary["problems"][0].startswith("projected size")


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere.zarr"), "--out", str(tmp_path / "r")]) == 2
    assert "sae-store report: error: no activation store at" in capsys.readouterr().err


def test_suggested_commands_are_valid_command_lines(bare_report: ReportResult):
    """Every command the report suggests parses with the real CLI (flags exist, values are accepted)."""
    parser = build_parser()
    summary = _summary(bare_report)["sections"]
    commands = [c for s in summary["completeness"]["steps"] for c in s["commands"]]
    commands += [c for sec in summary.values() if sec.get("status") == "not run" for c in sec["commands"]]
    commands = [c for c in commands if not c.startswith("#")]
    assert len(commands) >= 15
    for command in commands:
        argv = shlex.split(command.replace(" L ", " 0 ").replace("--layer L", "--layer 0"))
        assert argv[0] == "sae-store"
        parser.parse_args(argv[1:])  # SystemExit (a test error) on an unknown flag or sub-command


def test_not_run_interventions_suggest_caption_first(bare_report: ReportResult):
    sections = _summary(bare_report)["sections"]
    (intervene,) = [s for s in sections["completeness"]["steps"] if s["step"] == "intervene"]
    assert [c.split()[1] for c in intervene["commands"]] == ["caption", "intervene"]
    suggested = [c.split()[1] for c in sections["interventions"]["commands"]]
    assert suggested == ["caption", "intervene", "intervene"]
