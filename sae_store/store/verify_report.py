"""What ``sae-store verify`` found: damaged or missing files, the regions they held, values per layer.

:class:`VerifyReport` is filled by :mod:`sae_store.store.verify` and rendered here, for people
(:meth:`VerifyReport.render`) and as JSON (:meth:`VerifyReport.to_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Region:
    """What one chunk file of an array holds: layers (None if the array has no layer axis),
    languages (likewise) and samples ``start:stop`` (None if it has no sample axis)."""

    layers: tuple[int, ...] | None
    languages: tuple[str, ...] | None
    samples: tuple[int, int] | None

    def describe(self) -> str:
        parts = []
        if self.layers is not None:
            parts.append(f"layer {','.join(map(str, self.layers))}")
        if self.languages is not None:
            parts.append(",".join(self.languages))
        if self.samples is not None:
            parts.append(f"samples {self.samples[0]}:{self.samples[1]}")
        return " ".join(parts) or "the whole array"


@dataclass(frozen=True)
class Problem:
    """A damaged or missing file, what it held, and the command that rewrites it."""

    file: str
    """Path relative to the store."""
    array: str
    """The array's key: ``n_tokens``, ``features/feature_mean``, ``analysis/bias/q_value``."""
    region: Region
    error: str
    redo: str | None = None
    """The command that rewrites what ``verify --repair`` clears for it; None if no command can (the
    arrays made by ``sae-store init``)."""
    whole_group: bool = False
    """``--repair`` removes the array's whole group (its metadata or a result is damaged), not a block."""
    notice: bool = False
    """Not damage for certain: a flag file missing while its block has data files, as an interrupted
    extraction leaves it - or lost flags. Named, but the store is not reported as damaged."""

    @property
    def redoable(self) -> bool:
        return self.redo is not None


@dataclass
class LayerHealth:
    """Values of one layer's flagged samples, as decoded."""

    layer: int
    nonfinite: int = 0
    """NaN/inf values over the real tokens of flagged samples."""
    recorded_nonfinite: int = 0
    """What the store's ``nonfinite`` variable records for them."""
    max_abs: float = 0.0
    float16_overflow: int = 0
    """Finite values with ``|x|`` beyond float16's 65,504."""


@dataclass
class VerifyReport:
    """What :func:`verify_store` (or, without decoding, :func:`check_flags`) found."""

    store: Path
    interrupted: str | None = None
    """Why the store may be half-changed (an append running or left unfinished), with the command that
    finishes or undoes it; None if nothing is interrupted."""
    problems: list[Problem] = field(default_factory=list)
    layers: list[LayerHealth] = field(default_factory=list)
    files_checked: int = 0
    bytes_checked: int = 0
    seconds: float = 0.0
    init_command: str = "sae-store init NEW_STORE --samples SAMPLES.csv --model MODEL_DIR"
    """What makes a new store like this one (for damage no command repairs in place)."""

    @property
    def ok(self) -> bool:
        errors = [p for p in self.problems if not p.notice]
        return self.interrupted is None and not errors and not any(h.nonfinite for h in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "ok": self.ok,
            "interrupted": self.interrupted,
            "problems": [{**asdict(p), "region": p.region.describe()} for p in self.problems],
            "layers": [asdict(h) for h in self.layers],
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "seconds": self.seconds,
            "repair": self.repair_command() if any(not p.notice for p in self.problems) else None,
        }

    def redo_commands(self) -> list[str]:
        """The commands that rewrite what ``--repair`` clears, each once, in the order found."""
        return list(dict.fromkeys(p.redo for p in self.problems if p.redo is not None))

    def repair_command(self) -> str:
        return " && ".join([f"sae-store verify {self.store} --repair", *self.redo_commands()])

    def render(self) -> str:
        lines = [] if self.interrupted is None else [f"ERROR: {self.interrupted}"]
        for p in self.problems:
            lines.append(f"{'note' if p.notice else 'ERROR'}: {p.file} ({p.region.describe()}): {p.error}")
        fixable = [p for p in self.problems if p.redoable and not p.notice]
        if fixable:
            lines.append(
                f"to redo exactly the {len(fixable)} damaged or missing file(s): `{self.repair_command()}` "
                "(--repair deletes them and clears the completion flags of the blocks they held, or removes "
                "a damaged result group, and says what it cleared)"
            )
        if any(not p.redoable for p in self.problems):
            lines.append(
                "ERROR: files made by `sae-store init` (coordinates, sample labels, array metadata) are "
                "damaged or missing, and no command rebuilds them in place: restore the store from a backup, "
                f"or create a new one with `{self.init_command}` and extract into it"
            )
        for h in self.layers:
            if h.nonfinite:
                lines.append(
                    f"ERROR: layer {h.layer}: {h.nonfinite} NaN/inf values in flagged samples (the store "
                    f"records {h.recorded_nonfinite}); they came from the model: extract in float32 "
                    "(--dtype float32)"
                )
            if h.float16_overflow:
                lines.append(
                    f"layer {h.layer}: {h.float16_overflow} values beyond float16's range (|x| up to "
                    f"{h.max_abs:.4g}): never cast them to float16"
                )
        if self.files_checked:
            rate = self.bytes_checked / self.seconds / 1e9 if self.seconds else 0.0
            lines.append(
                f"decoded {self.files_checked} files, {self.bytes_checked / 1e6:.1f} MB in "
                f"{self.seconds:.1f} s ({rate:.2f} GB/s)"
            )
        lines.append("store OK" if self.ok else "store NOT OK")
        return "\n".join(lines)
