"""The pipeline config: YAML loading, unknown keys, types, SLURM values and time formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from sae_store.errors import ConfigError
from sae_store.jobs.config import DEMO_CONFIG, PipelineConfig, config_from_dict, load_config
from sae_store.jobs.slurm_config import SlurmConfig, StepResources, parse_slurm_time
from sae_store.resources import example_config, example_configs
from sae_store_cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_demo_config_loads_and_round_trips(tmp_path: Path) -> None:
    cfg = load_config(DEMO_CONFIG, root=tmp_path / "demo")
    assert cfg.paths.path("store") == tmp_path / "demo" / "store.zarr"
    assert cfg.store.samples_per_shard == 8 and cfg.require_slurm().tasks == 3
    assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_example_cluster_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "ada")  # its paths.root is /scratch/$USER/...
    cfg = load_config(REPO / "configs" / "gemma3-4b.yaml")
    assert cfg.paths.run_dir == Path("/scratch/ada/gemma3-bias")
    assert cfg.layers == tuple(range(34))  # written `0-33`, the CLI's syntax
    assert cfg.interventions.layers == (6, 12, 18, 24, 30)
    slurm = cfg.require_slurm()
    assert slurm.resources("extract").gres == "gpu:1"
    assert parse_slurm_time(slurm.resources("train").time or "") > parse_slurm_time(slurm.time)


@pytest.mark.parametrize(
    ("value", "layers"),
    [("0-3", (0, 1, 2, 3)), ("10,22", (10, 22)), ("0-1,5", (0, 1, 5)), (7, (7,)), ([3, 1], (1, 3))],
)
def test_layers_take_the_cli_syntax_in_yaml(value: object, layers: tuple[int, ...]) -> None:
    cfg = config_from_dict({"paths": {"root": "r"}, "layers": value, "interventions": {"layers": value}})
    assert cfg.layers == layers and cfg.interventions.layers == layers


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1,1", r"layers '1,1' names layer\(s\) \[1\] more than once"),
        ([2, 2], r"layers \[2, 2\] names layer\(s\) \[2\] more than once"),
        ("3-1", r"layers '3-1': range '3-1' runs backwards"),
        ("x", r"layers 'x': cannot read 'x'; use indices and inclusive ranges"),
        (True, r"layers must be layer indices"),
    ],
)
def test_bad_layers_in_yaml_are_refused(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"paths": {"root": "r"}, "layers": value})
    with pytest.raises(ConfigError, match="interventions." + message):
        config_from_dict({"paths": {"root": "r"}, "interventions": {"layers": value}})


def test_example_configs_are_packaged_resources() -> None:
    assert set(example_configs()) == {"demo", "gemma3-4b"}
    assert example_config("demo") == DEMO_CONFIG
    with pytest.raises(
        ConfigError, match=r"no example config named 'x'; the examples are \['demo', 'gemma3-4b'\]"
    ):
        example_config("x")


def test_paths_expand_variables_and_resolve_against_the_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELS", "/models")
    cfg = config_from_dict({"paths": {"root": "runs/a", "model": "$MODELS/gemma"}})
    assert cfg.paths.run_dir == tmp_path / "runs" / "a"
    assert cfg.paths.path("model") == Path("/models/gemma")
    assert cfg.paths.path("store") == tmp_path / "runs" / "a" / "store.zarr"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"paths": {"root": "r"}, "layer": [1]},
         r"unknown key\(s\) \['layer'\] in the config \(did you mean 'layers'\?\); "
         r"allowed: \['paths', 'layers',"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "partiton": "x"}},
         r"unknown key\(s\) \['partiton'\] in section 'slurm' \(did you mean 'partition'\?\); "
         r"allowed: \['partition', 'account', 'qos',"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "steps": {"extract": {"nodes": 1}}}},
         r"unknown key\(s\) \['nodes'\] in section 'slurm.steps.extract'; allowed: \['partition', 'cpus',"),
        ({"paths": {"root": "r"}, "slurm": {"cpus": 4}},
         r"slurm.partition is required: the partition to submit to \(`sinfo -s` lists them\)"),
        ({"paths": {}}, r"paths.root is required"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "cpus": "four"}},
         r"slurm.cpus must be a positive integer, got 'four'"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "time": "2h"}},
         r"slurm.time must be a SLURM time limit in one of MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "steps": {"train": {"time": "01:75:00"}}}},
         r"slurm.steps.train.time '01:75:00' has a field out of range"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "memory": "16 GB"}},
         r"slurm.memory must be a size like '4G', '500M' or '16000' \(MB\), got '16 GB'"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "mail_user": "me@x.org"}},
         r"slurm.mail_user is 'me@x.org' but slurm.mail_types is empty"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "mail_types": ["END", "FAILURE"]}},
         r"slurm.mail_types\[1\] must be one of \['NONE', 'BEGIN', 'END', 'FAIL',"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu\n#SBATCH --qos=high"}},
         r"slurm.partition must be a single line without control characters"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "extra_directives": ["constraint=a100"]}},
         r"slurm.extra_directives holds sbatch options like '--constraint=a100', got 'constraint=a100'"),
        ({"paths": {"root": "r"}, "slurm": {"partition": "gpu", "tasks": 0}},
         r"slurm.tasks must be a positive"),
        ({"paths": {"root": "r"}, "sae": {"b_dec_init": "median"}},
         r"sae.b_dec_init must be one of \['mean', 'zeros'\], got 'median'"),
        ({"paths": {"root": "r"}, "sae": {"arch": "gated"}},
         r"sae.arch must be one of \['topk', 'batchtopk', 'relu', 'jumprelu', 'matryoshka_batchtopk'\], "
         r"got 'gated'"),
        ({"paths": {"root": "r"}, "store": {"samples_per_shard": 0}},
         r"samples_per_shard must be a positive"),
        ({"paths": {"root": "r"}, "analysis": {"alpha": 1.5}}, r"analysis.alpha must be in \(0, 1\)"),
        ({"paths": {"root": "r"}, "slurm": ["partition", "gpu"]}, r"section 'slurm' must be a mapping"),
        ({"paths": {"root": "r", "captions": "in/c.csv"}, "demo": {}},
         r"with a demo section, paths.captions must be DIR/captions.csv and paths.images DIR/images"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_with_what_to_change(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file '.*missing.yaml' does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: {root: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config file '.*bad.yaml' is not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a: [1, 2\nb: 3\n", "line 2, column 2: expected ',' or ']', but got ':' (while parsing a flow "
         "sequence from line 1)"),
        ("a:\n  b: 1\n c: 2\n", "line 3, column 2: expected <block end>, but found '<block mapping start>' "
         "(while parsing a block mapping from line 1)"),
        ("a: \t- 1\n", "line 1, column 4: found character '\\t' that cannot start any token (while "
         "scanning for the next token)"),
    ],
)  # fmt: skip
def test_invalid_yaml_is_one_line_with_line_and_column(tmp_path: Path, capsys, text: str, where: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main(["jobs", "render", "--config", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"sae-store jobs render: error: config file {str(bad)!r} is not valid YAML: {where}; fix the file "
        "there and rerun\n"
    )


def test_commands_without_slurm_section_say_what_to_add(make_config: Callable[..., PipelineConfig]) -> None:
    with pytest.raises(
        ConfigError, match=r"the config has no `slurm` section; add one with at least `partition"
    ):
        make_config(slurm=None).require_slurm()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("5:30", 330), ("02:00:00", 7200), ("1-12", 129600), ("1-0:30", 88200),
     ("2-03:04:05", 183845), ("0", 0)],
)  # fmt: skip
def test_slurm_time_formats(text: str, seconds: int) -> None:
    assert parse_slurm_time(text) == seconds


@pytest.mark.parametrize("text", ["2h", "1:2:3:4", "01:60:00", "1-24", "-5", "", " 10", "1-", "10:"])
def test_slurm_time_formats_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"time"):
        parse_slurm_time(text)


def test_step_resources_override_the_defaults() -> None:
    slurm = SlurmConfig(
        partition="cpu", cpus=2, memory="8G", time="01:00:00", extra_directives=("--constraint=x",),
        steps={"extract": StepResources(partition="gpu", gres="gpu:1", time="04:00:00", tasks=8,
                                        extra_directives=("--exclusive",))},
    )  # fmt: skip
    extract, report = slurm.resources("extract"), slurm.resources("report")
    assert (extract.partition, extract.gres, extract.time, extract.cpus, extract.tasks) == (
        "gpu", "gpu:1", "04:00:00", 2, 8)  # fmt: skip
    assert extract.extra_directives == ("--constraint=x", "--exclusive")
    assert (report.partition, report.gres, report.time, report.tasks) == ("cpu", None, "01:00:00", 4)


def test_writer_threads_and_codec_preset_reach_the_commands() -> None:
    from sae_store.jobs.steps import STEPS

    cfg = config_from_dict(
        {
            "paths": {"root": "r"},
            "model": {"writer_threads": 6},
            "store": {"compressor": "compact", "clevel": 5},
        }
    )
    argv = {s.name: s.argv(cfg, 1) for s in STEPS if s.name in ("init", "extract")}
    assert argv["extract"][argv["extract"].index("--writer-threads") + 1] == "6"
    init = argv["init"]
    assert init[init.index("--compressor") + 1] == "compact" and init[init.index("--clevel") + 1] == "5"
    assert "--shuffle" not in init
    plain = config_from_dict({"paths": {"root": "r"}})
    init_step = next(s for s in STEPS if s.name == "init")
    assert "--clevel" not in init_step.argv(plain, 1)  # unset: the preset's own level
    with pytest.raises(ConfigError, match=r"writer_threads"):
        config_from_dict({"paths": {"root": "r"}, "model": {"writer_threads": 0}})
