"""Token roles: what each token position of a prompt holds (a base module every layer may import)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Literal, get_args

from sae_store.configbase import SettingError, setting


class TokenRole(IntEnum):
    """What a token position holds; stored in the store's ``token_role`` as int8."""

    PAD = 0
    SPECIAL = 1
    TEXT = 2
    IMAGE = 3


#: Role names in the order of their codes (``pad`` first).
TOKEN_ROLE_NAMES: tuple[str, ...] = tuple(r.name.lower() for r in TokenRole)

Role = Literal["image", "text", "special"]
#: Roles a selection may name (padding is never used).
ROLES: tuple[str, ...] = get_args(Role)
#: Token roles used when none are given: special tokens (BOS, turn markers) and padding excluded.
DEFAULT_ROLES: tuple[str, ...] = ("image", "text")


def parse_roles(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Parse ``image,text`` (or ``all`` = image and text, or a list of names) into role names."""
    parts = [p.strip() for p in (str(text).split(",") if isinstance(text, str) else text) if p.strip()]
    roles = DEFAULT_ROLES if parts == ["all"] else tuple(parts)
    check_roles(roles)
    return roles


def check_roles(roles: tuple[str, ...]) -> None:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles or len(set(roles)) != len(roles):
        what = f"must be distinct names from {list(ROLES)} (or 'all' for image and text), got {list(roles)!r}"
        raise SettingError("roles", what)


def role_codes(roles: tuple[str, ...] | list[str]) -> list[int]:
    """The ``token_role`` codes of role names."""
    return [int(TokenRole[r.upper()]) for r in roles]


def roles_setting(help: str, default: tuple[str, ...] = DEFAULT_ROLES) -> Any:
    """The one declaration of a token-role selection (``--roles image,text``)."""
    return setting(default, help=help, metavar="ROLES", parse=parse_roles, what=f"names from {list(ROLES)}")
