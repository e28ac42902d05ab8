"""Bad input at the command line: one clear line on stderr, exit status 2, nothing left behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sae_store.errors import SaeStoreError
from sae_store.store import ActivationStore
from sae_store.train.run import load_checkpoint
from sae_store_cli.main import main

LONG = "9" * 400


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI, expect exit 2 and exactly one line on stderr; return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--quota=-5G", "size '-5G' is not understood"),
        ("--quota=inf", "size 'inf' is not understood"),
        ("--quota=nan", "size 'nan' is not understood"),
        (f"--quota={LONG}", "size '9999999999999999999999999999999999...' (402 characters) is beyond any"),
        ("--quota=0", "size '0' must be positive"),
        ("--inode-quota=inf", "file count 'inf' must be a positive whole number below 1e18"),
        ("--inode-quota=nan", "file count 'nan' must be a positive whole number"),
        ("--inode-quota=-3", "file count '-3' must be a positive whole number"),
        ("--inode-quota=1.5", "file count '1.5' must be a positive whole number"),
        (f"--inode-quota={LONG}", "file count '9999999999999999999999999999999999...' (402 characters)"),
    ],
)
def test_du_refuses_impossible_quotas(
    option: str, message: str, make_store: Callable[..., ActivationStore], capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store()
    assert message in _fails(["du", str(store.path), option], capsys)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ("1,1", "layers '1,1' names layer(s) [1] more than once; give each layer once"),
        ("0-2,1", "layers '0-2,1' names layer(s) [1] more than once"),
        (LONG, "cannot read '9999999999999999999999999999999999...' (402 characters)"),
    ],
)
def test_duplicate_and_absurd_layers_are_refused(
    layers: str, message: str, make_store: Callable[..., ActivationStore], capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(layers=[0, 1, 2])
    for command in (
        ["extract", str(store.path), "--model", "unused"],
        ["encode", str(store.path), "--saes", "x"],
    ):
        assert message in _fails([*command, "--layers", layers], capsys)


def test_intervene_summary_of_a_missing_folder_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _fails(["intervene-summary", str(tmp_path / "nowhere")], capsys)
    assert "holds no intervene/ folder of per-layer results" in line
    assert not (tmp_path / "nowhere").exists()


def test_intervene_at_a_layer_without_sae_names_the_layer(tmp_path: Path) -> None:
    from sae_store.intervene.run import load_layer_sae
    from sae_store.train.config import SaeConfig
    from sae_store.train.formats import save_sae
    from sae_store.train.sae import build_sae

    for layer in (0, 2):
        config = SaeConfig(architecture="topk", d_in=8, d_sae=16, k=2)
        save_sae(build_sae(config), tmp_path / "saes" / f"layer_{layer}")
    with pytest.raises(
        SaeStoreError, match=r"no SAE for layer\(s\) \[3\] in '.*saes' \(it has layers \[0, 2\]\)"
    ):
        load_layer_sae(tmp_path / "saes", 3)


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, "pickle"])
def test_corrupt_checkpoint_gives_one_message_without_torch_advice(
    tmp_path: Path, content: bytes | str
) -> None:
    path = tmp_path / "checkpoint.pt"
    if content == "pickle":  # a checkpoint holding a Python object: torch would advise loading it unsafely
        torch.save({"version": 1, "object": Path("x")}, path)
    else:
        path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(SaeStoreError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"checkpoint {str(path)!r} is unreadable (")
    assert message.endswith("delete it (or the whole folder) and train again without --resume")
    assert "weights_only" not in message and "\n" not in message
