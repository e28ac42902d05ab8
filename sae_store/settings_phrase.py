"""What a declared setting allows, in words: ``a positive integer``, ``in [0, 1)``, ``one of [...]``.

Messages about a bad value (:class:`~sae_store.configbase.SettingError`) and ``--help`` say it from
the field's type and bounds, so they cannot disagree with the check.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

if TYPE_CHECKING:
    from sae_store.configbase import Setting


def strip_optional(tp: Any) -> Any:
    if get_origin(tp) in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def literal_type(tp: Any) -> Any:
    tp = strip_optional(tp)
    return tp if get_origin(tp) is Literal else None


def phrase(tp: Any, s: Setting, *, plural: bool = False) -> str:
    """What values of type ``tp`` with the bounds of ``s`` are (``a positive integer``, ``in [0, 1)``)."""
    tp = strip_optional(tp)
    if get_origin(tp) is Literal:
        return f"one of {list(get_args(tp))}"
    if get_origin(tp) is tuple:
        return "a list of " + phrase(get_args(tp)[0], s, plural=True)
    return _bounds_phrase(tp, s, plural=plural)


def _bounds_phrase(tp: Any, s: Setting, *, plural: bool = False) -> str:
    if tp is bool:
        return "true or false"
    if tp is str:
        return "texts" if plural else "a text"
    kind = "integer" if tp is int else "number"
    low, opening = (s.ge, "[") if s.ge is not None else (s.gt, "(")
    high, closing = (s.le, "]") if s.le is not None else (s.lt, ")")
    if low is not None and high is not None:
        return (
            f"{kind}s in {opening}{_num(low)}, {_num(high)}{closing}"
            if plural
            else (f"in {opening}{_num(low)}, {_num(high)}{closing}")
        )
    if high is None and ((s.ge == 1 and tp is int) or s.gt == 0):
        words = f"positive {kind}"
    elif high is None and s.ge == 0:
        words = f"non-negative {kind}"
    elif low is not None:
        words = f"{kind} {'>=' if s.ge is not None else '>'} {_num(low)}"
    elif high is not None:
        words = f"{kind} {'<=' if s.le is not None else '<'} {_num(high)}"
    else:
        words = kind
    if plural:
        return words.replace(kind, kind + "s", 1)
    return ("an " if words[0] in "aeiou" else "a ") + words


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
