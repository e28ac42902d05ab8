"""Checks shared by the tests of interrupted operations: every command sees an interrupted append."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sae_store.errors import StoreLockedError
from sae_store.store import open_store
from sae_store_cli.main import main
from tests.conftest import samples_table


def writers(store: Path, tmp_path: Path) -> list[list[str]]:
    """Every command that changes a store, with the arguments it needs to get going."""
    table = tmp_path / "new.csv"
    samples_table(2, prefix="n").to_csv(table, index=False)
    s = str(store)
    return [
        ["extract", s, "--model", str(tmp_path)],
        ["append", s, "--samples", str(table)],
        ["encode", s, "--saes", str(tmp_path)],
        ["analyze", "bias", s],
        ["caption", s, "--model", str(tmp_path)],
        ["intervene", s, "--saes", str(tmp_path), "--mode", "ablate"],
    ]


def error_prefix(args: list[str]) -> str:
    """How the command line ``args`` names itself in its error (a group's sub-command included)."""
    return "sae-store " + (" ".join(args[:2]) if args[0] in ("analyze", "jobs") else args[0])


def assert_every_command_refuses(store: Path, message: str, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    for name in ("status", "verify"):
        assert main([name, str(store)]) == 1, name
        out = capsys.readouterr().out
        assert f"ERROR: {message}\n" in out, (name, out)
        assert out.rstrip().endswith("store NOT OK")
    assert main(["status", str(store), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["check"]["interrupted"] == message
    for args in writers(store, tmp_path):
        assert main(args) == 2, args
        assert capsys.readouterr().err == f"{error_prefix(args)}: error: {message}\n", args
    with pytest.raises(StoreLockedError) as refused:
        open_store(store).require_writable()  # what the library's writers call
    assert str(refused.value) == message
