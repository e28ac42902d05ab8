"""Settings as command-line text: a value written as text read by its declaration, and the options
that set given values (a pipeline job's command line). Both follow :mod:`sae_store.configbase`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args, get_origin

from sae_store.configbase import SettingError, SettingField, declared, strip_optional, value_error


def from_text(f: SettingField, text: Any) -> Any:
    """The value of ``f`` written as ``text`` on a command line (non-text values pass through)."""
    if not isinstance(text, str):
        return text
    if f.setting.parse is not None:
        return f.setting.parse(text)
    tp = strip_optional(f.type)
    if get_origin(tp) is tuple and not f.setting.repeat:
        item = get_args(tp)[0]
        try:
            return tuple(_scalar(f, item, part.strip()) for part in text.split(",") if part.strip())
        except SettingError:
            raise value_error(f, text) from None
    return _scalar(f, tp, text)


def _scalar(f: SettingField, tp: Any, text: str) -> Any:
    if tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            raise value_error(f, text) from None
    if tp is bool:
        words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False}
        if text.lower() not in words:
            raise value_error(f, text)
        return words[text.lower()]
    return text


def to_argv(values: Mapping[str, Any], classes: Sequence[type]) -> list[str]:
    """Command-line options that set ``values`` (YAML keys -> values) of ``classes``' fields.

    Options come in the order the classes declare their fields; keys that none of ``classes`` declares
    are left out (another command takes them), and so are None values (the command keeps its default).
    """
    by_key = {f.key: f for cls in classes for f in declared(cls) if f.setting.expose}
    argv: list[str] = []
    for key, f in by_key.items():
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(f"--{f.flag}" if value else f"--no-{f.flag}")
        elif f.setting.repeat:
            for item in value:
                argv += [f"--{f.flag}", str(item)]
        else:
            argv += [f"--{f.flag}", f.show(value)]
    return argv
