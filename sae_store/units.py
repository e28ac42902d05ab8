"""Sizes and counts as people write them (``500G``, ``2GiB``, ``1e6``): read, checked and shown."""

from __future__ import annotations

import math
import re

from sae_store.errors import SaeStoreError, shown_value

_UNITS = {
    "": 1,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "KI": 2**10,
    "MI": 2**20,
    "GI": 2**30,
    "TI": 2**40,
    "PI": 2**50,
}
#: Quotas and counts beyond 1e18 (an exabyte, 10^18 files) are typing mistakes, not filesystems.
_MAX_QUANTITY = 1e18
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGTP]I?)?B?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parse a size such as ``500G``, ``1.5TB``, ``100GiB`` or ``123456`` into bytes.

    Decimal units (K, M, G, T, P) are powers of 1000; binary ones (Ki, Mi, Gi, ...) powers of 1024.
    A number of bytes (an int) is returned as it is (a setting's bounds check it).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise SaeStoreError(
            f"size {shown_value(text)} is not understood; use a positive number with an optional unit, "
            "e.g. 500G, 1.5TB or 100GiB"
        )
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    if value <= 0:
        raise SaeStoreError(f"size {shown_value(text)} must be positive")
    if not value < _MAX_QUANTITY:
        raise SaeStoreError(f"size {shown_value(text)} is beyond any filesystem; give e.g. 500G or 2TiB")
    return int(value)


def parse_share(text: str | int) -> str:
    """A share of some total (``50%``), a size (``40GiB``, read by :func:`parse_size`) or ``0`` (none),
    checked and returned as text; :func:`share_bytes` turns it into bytes once the total is known."""
    t = str(text).strip()
    if t == "0":
        return t
    if t.endswith("%"):
        try:
            share = float(t[:-1])
        except ValueError:
            share = math.nan
        if not 0 < share <= 100:
            raise SaeStoreError(
                f"share {shown_value(text)} is not a percentage in (0, 100]; give e.g. 50%, a size such "
                "as 40GiB, or 0"
            )
        return f"{share:g}%"
    parse_size(t)
    return t


def share_bytes(text: str, total: int) -> int:
    """Bytes meant by :func:`parse_share`'s ``text`` when the whole is ``total`` bytes."""
    if text.endswith("%"):
        return int(total * float(text[:-1]) / 100)
    return 0 if text == "0" else parse_size(text)


def parse_count(text: str) -> int:
    """Parse a positive file count such as ``1000000`` or ``1e6``."""
    try:
        value = float(text)
    except ValueError as e:
        raise SaeStoreError(f"file count {shown_value(text)} is not a number; e.g. 1000000 or 1e6") from e
    if not 0 < value < _MAX_QUANTITY or value != int(value):
        raise SaeStoreError(
            f"file count {shown_value(text)} must be a positive whole number below 1e18, e.g. 1000000 or 1e6"
        )
    return int(value)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_size(n: int) -> str:
    """Bytes as the shortest exact binary size (``2GiB``, ``512MiB``), read back by :func:`parse_size`."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)
