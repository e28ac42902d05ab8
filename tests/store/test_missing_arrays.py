"""A store missing an array's metadata is refused by every command that reads or writes its data, with
one message naming the array and how to get a whole store; status and verify say the same."""

from __future__ import annotations

import shutil

import pytest

from sae_store.store import schema as S
from sae_store_cli.main import main

from .refusals import error_prefix, writers


def _message(store, missing: list[str]) -> str:
    return (
        f"store {str(store)!r} lacks the array(s) {missing} (no {missing[0]}/zarr.json): they were deleted "
        "or damaged, and no command rebuilds the arrays `sae-store init` made in place; restore the store "
        "from a backup, or create a new one with `sae-store init NEW_STORE --samples SAMPLES.csv --model "
        "synthetic` and extract into it"
    )


@pytest.mark.parametrize("name", [S.ACTIVATIONS, S.COMPLETE, S.TOKEN_ROLE, S.GENDER_CODE])
def test_every_command_refuses_a_store_missing_an_array(make_store, tmp_path, capsys, name) -> None:
    store = make_store(8).path
    shutil.rmtree(store / name)
    before = sorted(p for p in store.rglob("*"))
    for args in [
        *writers(store, tmp_path),
        ["train", str(store), "--layer", "0", "--out", str(tmp_path / "saes")],
    ]:
        assert main(args) == 2, args
        assert capsys.readouterr().err == f"{error_prefix(args)}: error: {_message(store, [name])}\n", args
    assert sorted(p for p in store.rglob("*")) == before  # nothing written
    for command in ("status", "verify"):
        assert main([command, str(store)]) == 1
        out = capsys.readouterr().out
        assert f"ERROR: {name}/zarr.json (the whole array): the array is missing (no zarr.json)\n" in out
        assert "--repair" not in out  # nothing --repair or extract could fix
        assert (
            "no command rebuilds them in place: restore the store from a backup, or create a new one with "
            "`sae-store init NEW_STORE --samples SAMPLES.csv --model synthetic` and extract into it"
        ) in out
    assert main(["verify", str(store), "--repair"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "nothing was cleared: no command redoes what is damaged (see above)"
    )
