"""A sweep: several SAEs of one layer trained from one pass over the same batches.

Its entries may differ in any SAE or optimisation setting (width, k, architecture, lr, steps, the
initialisation seed); what decides the batches (the layer, the data settings) and where they live
(the device) is shared. :func:`sweep_entries` expands ``--sweep k=32,64 --sweep arch=topk,batchtopk``
into the cartesian product of the values, each entry named by its values (``k=32,arch=topk``: its
folder under ``--out``); :func:`check_sweep` refuses entries that cannot share a pass, naming them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, get_origin

from sae_store.configbase import SettingError, declared, strip_optional
from sae_store.errors import ConfigError
from sae_store.settings_text import from_text
from sae_store.train.config import RunConfig, SaeConfig, TrainerConfig


def _swept_fields() -> dict[str, tuple[str, Any]]:
    """Flag -> (``sae`` or ``trainer``, field) of every setting a sweep may vary."""
    out = {}
    for part, cls in (("sae", SaeConfig), ("trainer", TrainerConfig)):
        for f in declared(cls):
            if f.setting.expose and f.name != "device" and get_origin(strip_optional(f.type)) is not tuple:
                out[f.flag] = (part, f)
    return out


def sweep_entries(base: RunConfig, specs: Sequence[str]) -> list[tuple[str, RunConfig]]:
    """The runs ``specs`` (``SETTING=V1,V2,...`` each) describe around ``base``, with their names.

    Raises
    ------
    ConfigError
        A spec is not ``SETTING=VALUES``, names a setting a sweep cannot vary, repeats one, or a value
        is not allowed (named as ``--sweep SETTING``).
    """
    fields = _swept_fields()
    axes: list[list[tuple[str, str, str]]] = []
    for spec in specs:
        flag, sep, values = spec.partition("=")
        flag = flag.strip().removeprefix("--")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not items:
            raise ConfigError(f"--sweep {spec!r} is not SETTING=VALUE,VALUE,...; e.g. --sweep k=32,64,128")
        if flag not in fields:
            raise ConfigError(
                f"--sweep {flag} is not a setting a sweep can vary: its SAEs share the layer, the data "
                f"settings and the device; choose from {sorted(fields)}"
            )
        if any(a[0][0] == flag for a in axes):
            raise ConfigError(f"--sweep {flag} is given twice; list all its values in one --sweep {flag}=...")
        axes.append([(flag, v, f"{flag}={v}") for v in items])
    entries = []
    for combo in itertools.product(*axes):
        parts: dict[str, dict[str, Any]] = {"sae": {}, "trainer": {}}
        for flag, text, _ in combo:
            part, f = fields[flag]
            try:
                parts[part][f.name] = from_text(f, text)
            except SettingError as e:
                raise e.renamed(f"--sweep {flag}") from None
        try:
            config = replace(
                base, sae=replace(base.sae, **parts["sae"]), trainer=replace(base.trainer, **parts["trainer"])
            )
        except SettingError as e:
            flag = next((fl for fl, (_, f) in fields.items() if f.name == e.field), e.field)
            raise e.renamed(f"--sweep {flag}") from None
        entries.append((",".join(name for _, _, name in combo), config))
    return entries


def check_sweep(configs: Sequence[RunConfig], names: Sequence[str], hidden_size: int) -> None:
    """Refuse a sweep whose entries cannot share one pass over one layer's batches.

    Raises
    ------
    ConfigError
        Entries name different layers, input widths (``sae.d_in`` other than 0 or ``hidden_size``),
        data settings or devices, or the same name (folder); the message names the entries.
    """
    if not configs:
        raise ConfigError("a sweep needs at least one SAE to train")
    _same(configs, names, "layer", lambda c: c.data.layer, "run one sweep per layer")
    if any(c.sae.d_in not in (0, hidden_size) for c in configs):
        _same(configs, names, "input width (d_in)", lambda c: c.sae.d_in or hidden_size,
              f"the store's layer has width {hidden_size}: leave d_in unset (0)", always=True)  # fmt: skip
    data = [c.data.to_dict() for c in configs]
    differing = sorted(k for k in data[0] if any(d[k] != data[0][k] for d in data))
    _same(
        configs,
        names,
        "data settings",
        lambda c: ", ".join(f"{k}={c.data.to_dict()[k]!r}" for k in differing),
        "a sweep's SAEs share their batches: only SAE and optimisation settings may differ",
    )
    _same(
        configs,
        names,
        "device",
        lambda c: c.trainer.device,
        "a sweep's SAEs share the device of their batches",
    )
    shared = sorted({n for n in names if list(names).count(n) > 1})
    if shared:
        raise ConfigError(
            f"several entries of the sweep are named {shared} (one folder each); name them apart"
        )


def _same(
    configs: Sequence[RunConfig], names: Sequence[str], what: str, key: Any, why: str, *, always: bool = False
) -> None:
    """Refuse entries whose ``key`` differs (``always``: in any case), listing the entries of each value."""
    groups: dict[Any, list[str]] = {}
    for config, name in zip(configs, names, strict=True):
        groups.setdefault(key(config), []).append(repr(name))
    if len(groups) > 1 or always:
        shown = "; ".join(f"{', '.join(group)}: {value}" for value, group in groups.items())
        raise ConfigError(f"a sweep's entries need one {what}, got {shown}; {why}")
