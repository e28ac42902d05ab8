"""Parsers and the extraction config."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sae_store.arraytask import slurm_task
from sae_store.errors import ConfigError
from sae_store.extract.config import DEFAULT_PROMPTS, ExtractConfig, parse_prompts
from sae_store.selection import parse_languages, parse_layers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-33", tuple(range(34))),
        ("10,22", (10, 22)),
        ("22, 10", (10, 22)),
        ("0-3,10,20-22", (0, 1, 2, 3, 10, 20, 21, 22)),
        ("7", (7,)),
    ],
)
def test_parse_layers(text: str, expected: tuple[int, ...]) -> None:
    assert parse_layers(text, 34) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0-34", r"layers '0-34': \[34\] out of range; the model has 34 layers, 0..33"),
        ("40,50", r"\[40, 50\] out of range"),
        ("a", r"cannot read 'a'; use indices and inclusive ranges"),
        ("1-", r"cannot read '1-'"),
        ("", r"cannot read ''"),
        ("3,,4", r"cannot read ''"),
        ("-1", r"cannot read '-1'"),
        ("9-3", r"range '9-3' runs backwards; write it as '3-9'"),
        ("1,1", r"layers '1,1' names layer\(s\) \[1\] more than once; give each layer once"),
        ("5,5,4-6", r"names layer\(s\) \[5\] more than once"),
        ("9" * 400, r"cannot read '9{30,}\.\.\.' \(402 characters\)"),
    ],
)
def test_parse_layers_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_layers(text, 34)


@given(st.sets(st.integers(0, 33), min_size=1))
def test_parse_layers_round_trips_any_list(layers: set[int]) -> None:
    assert parse_layers(",".join(map(str, layers)), 34) == tuple(sorted(layers))


def test_parse_languages_and_prompts() -> None:
    assert parse_languages("ar, en,ar", ["en", "ar"]) == ("ar", "en")
    with pytest.raises(ConfigError, match=r"unknown language key\(s\) \['fr'\]; known: \['en', 'ar'\]"):
        parse_languages("en,fr", ["en", "ar"])
    with pytest.raises(ConfigError, match=r"languages ' , ' is empty"):
        parse_languages(" , ", ["en"])
    assert parse_prompts(["fr=Décris la personne.", "de = Beschreibe die Person."]) == {
        "fr": "Décris la personne.",
        "de": "Beschreibe die Person.",
    }
    for bad, match in [("fr", "KEY=TEXT"), ("=x", "KEY=TEXT"), ("f r=x", "KEY=TEXT"), ("fr= ", "empty")]:
        with pytest.raises(ConfigError, match=match):
            parse_prompts([bad])
    assert DEFAULT_PROMPTS["en"] == "Describe the person in this image in detail."
    assert DEFAULT_PROMPTS["ar"] == "صف الشخص في هذه الصورة بالتفصيل."


def test_slurm_task() -> None:
    assert slurm_task({}) == (0, 1)
    assert slurm_task({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)
    # --array=1-4 numbers tasks from 1
    assert slurm_task(
        {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    ) == (0, 4)
    with pytest.raises(ConfigError, match="not integers"):
        slurm_task({"SLURM_ARRAY_TASK_ID": "x"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"batch_size must be a positive integer, got 0"),
        ({"task_count": 0}, r"task_count must be a positive integer"),
        ({"task_index": 3, "task_count": 3}, r"task_index must be in 0..2 for task_count 3, got 3"),
        ({"task_index": -1}, r"task_index must be in 0..0"),
        ({"on_nonfinite": "zero"}, r"on_nonfinite must be one of \['error', 'record'\], got 'zero'"),
        ({"quota": 0}, r"quota must be a positive number of bytes"),
        ({"sample_range": (8, 4)}, r"sample_range must be a non-empty range"),
        ({"layers": ()}, r"layers must not be empty"),
        ({"languages": ()}, r"languages must not be empty"),
        ({"pending_blocks": 0}, r"pending_blocks must be a positive integer"),
        ({"writer_threads": 0}, r"writer_threads must be a positive integer, got 0"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ExtractConfig(**kwargs)  # type: ignore[arg-type]


def test_config_round_trip() -> None:
    config = ExtractConfig(layers=(1, 3), languages=("ar",), sample_range=(0, 16), quota=10**9)
    assert ExtractConfig.from_dict(config.to_dict()) == config
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['batch'\] in ExtractConfig \(did you mean 'batch_"
    ):
        ExtractConfig.from_dict({"batch": 4})
