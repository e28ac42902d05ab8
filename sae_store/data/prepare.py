"""Build ``samples.csv`` from a bilingual captions CSV and an image folder, with a full report.

Every row that is not used ends up in ``prepare_report.json`` with its row number and reason;
nothing is dropped silently. Decisions (see :func:`prepare_samples`):

* one sample per image; all of its captions are kept, joined by a newline; a row repeating an
  earlier row exactly is left out with the reason ``"duplicate row"`` (it would count twice);
* the gender label comes from the captions of both languages pooled (never guessed), or from a
  provided gender column; an image given two different values in that column is rejected with the
  reason ``"conflicting gender values"`` (a per-image data fault, like a corrupt file, rather than a
  reason to refuse the whole file), while a value outside the accepted spellings is an error;
* a subsample is stratified by label with proportional allocation, and by default only images
  labelled male or female take part; ambiguous and unknown images are listed in the report.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pandas as pd

from sae_store._version import __version__
from sae_store.data.config import PrepareConfig
from sae_store.data.gender import GENDER_LABELS, GenderName, label_captions, normalize_gender_value
from sae_store.data.images import check_image
from sae_store.data.samples import SAMPLE_COLUMNS, SamplesTable, write_samples
from sae_store.data.sampling import stratified_indices
from sae_store.errors import DataError
from sae_store.progress import progress_bar

logger = logging.getLogger(__name__)

#: Columns the captions CSV must have (a gender column is optional and named by the caller).
CAPTION_COLUMNS: tuple[str, ...] = ("image", "en_caption", "ar_caption")
SAMPLES_FILE = "samples.csv"
REPORT_FILE = "prepare_report.json"
_LABELLED: tuple[GenderName, ...] = ("male", "female")


@dataclass
class PrepareResult:
    """What :func:`prepare_samples` produced."""

    samples: pd.DataFrame
    """The samples table as written (see :class:`~sae_store.data.samples.SamplesTable`)."""
    report: dict[str, Any]
    """The content of ``prepare_report.json``."""
    samples_path: Path
    """Where ``samples.csv`` was written."""
    report_path: Path
    """Where ``prepare_report.json`` was written."""


@dataclass
class _ImageRows:
    # All rows of the captions CSV naming one image, gathered before the image is checked.
    image: str
    rows: list[int] = field(default_factory=list)
    en: list[str] = field(default_factory=list)
    ar: list[str] = field(default_factory=list)
    given: dict[GenderName, list[int]] = field(default_factory=dict)


def _read_captions(path: Path, gender_column: str | None) -> pd.DataFrame:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"Captions CSV {str(path)!r} {what}.")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError as e:
        raise DataError(f"Captions CSV {str(path)!r} is empty; it needs a header and rows.") from e
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"Cannot read captions CSV {str(path)!r}: {e}") from e
    table.columns = [str(c).strip() for c in table.columns]
    required = [*CAPTION_COLUMNS, *([gender_column] if gender_column else [])]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(
            f"Captions CSV {str(path)!r} lacks the column(s) {missing}; found {list(table.columns)}. "
            f"It needs {list(CAPTION_COLUMNS)}"
            + (f" and the gender column {gender_column!r}." if gender_column else ".")
        )
    if len(table) == 0:
        raise DataError(f"Captions CSV {str(path)!r} has a header but no rows.")
    return table


def _group_rows(
    table: pd.DataFrame, gender_column: str | None, source: Path, rejected: list[dict[str, Any]]
) -> dict[str, _ImageRows]:
    images: dict[str, _ImageRows] = {}
    seen: dict[tuple[str, ...], int] = {}  # an exact repeat would count its captions twice
    columns = [*CAPTION_COLUMNS, *([gender_column] if gender_column else [])]
    for row, values in enumerate(table[columns].itertuples(index=False, name=None), start=1):
        image, en, ar = (str(v).strip() for v in values[:3])
        key = tuple(str(v).strip() for v in values)
        if key in seen:
            rejected.append(_rejection(row, image, "duplicate row", f"the same as row {seen[key]}"))
            continue
        seen[key] = row
        if not image:
            rejected.append(_rejection(row, image, "empty image name", "the 'image' cell is empty"))
            continue
        if not en and not ar:
            rejected.append(_rejection(row, image, "empty captions", "both captions are empty"))
            continue
        entry = images.setdefault(image, _ImageRows(image))
        entry.rows.append(row)
        if en:
            entry.en.append(en)
        if ar:
            entry.ar.append(ar)
        if gender_column and str(values[3]).strip():
            try:
                gender = normalize_gender_value(values[3])
            except DataError as e:
                raise DataError(
                    f"Captions CSV {str(source)!r}, column {gender_column!r}, data row {row}: {e}"
                ) from e
            entry.given.setdefault(gender, []).append(row)
    return images


def _rejection(row: int, image: str, reason: str, detail: str) -> dict[str, Any]:
    return {"row": row, "image": image, "reason": reason, "detail": detail}


def _reject_image(entry: _ImageRows, reason: str, detail: str, rejected: list[dict[str, Any]]) -> None:
    rejected.extend(_rejection(row, entry.image, reason, detail) for row in entry.rows)


def _drop_conflicting(images: dict[str, _ImageRows], rejected: list[dict[str, Any]]) -> None:
    for name, entry in list(images.items()):
        if len(entry.given) > 1:
            detail = "; ".join(f"{g} in rows {rows}" for g, rows in entry.given.items())
            _reject_image(entry, "conflicting gender values", detail, rejected)
            del images[name]


def _drop_bad_images(images: dict[str, _ImageRows], images_dir: Path, rejected: list[dict[str, Any]]) -> None:
    for name, entry in progress_bar(list(images.items()), desc="checking images", unit="img"):
        problem = check_image(images_dir / name)
        if problem is not None:
            _reject_image(entry, problem.reason, problem.detail, rejected)
            del images[name]


def _sample_ids(names: list[str]) -> list[str]:
    # The stem when unique, else the relative path; paths for all in the (odd) case of a clash.
    stems = Counter(PurePosixPath(n).stem for n in names)
    ids = [PurePosixPath(n).stem if stems[PurePosixPath(n).stem] == 1 else n for n in names]
    return ids if len(set(ids)) == len(ids) else list(names)


def _build_table(
    images: dict[str, _ImageRows], images_dir: Path, gender_column: str | None
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    names = list(images)
    records = []
    disagreements = []
    sep = SamplesTable.CAPTION_SEPARATOR
    for sample_id, name in zip(_sample_ids(names), names, strict=True):
        entry = images[name]
        from_captions = label_captions(entry.en, entry.ar).label
        gender: GenderName = from_captions
        if gender_column:
            gender = next(iter(entry.given), "unknown")
            if from_captions in _LABELLED and gender in _LABELLED and gender != from_captions:
                disagreements.append({"image": name, "given": gender, "from_captions": from_captions})
        records.append(
            (
                sample_id,
                name,
                os.path.abspath(images_dir / name),
                gender,
                sep.join(entry.en),
                sep.join(entry.ar),
            )
        )
    return pd.DataFrame.from_records(records, columns=list(SAMPLE_COLUMNS)), disagreements


def _label_counts(genders: pd.Series) -> dict[str, int]:
    counts = genders.value_counts()
    return {g: int(counts.get(g, 0)) for g in GENDER_LABELS}


def _summarise_rejections(rejected: list[dict[str, Any]]) -> str:
    counts = Counter(r["reason"] for r in rejected)
    first = rejected[0] if rejected else None
    text = ", ".join(f"{reason}: {n}" for reason, n in counts.items())
    if first:
        text += f"; first: row {first['row']} {first['image']!r}: {first['detail']}"
    return text


class _Selection(NamedTuple):
    # The outcome of filtering by label and subsampling.
    samples: pd.DataFrame
    excluded: pd.DataFrame
    before: dict[str, int]
    available: dict[str, int]

    def report_fields(self) -> dict[str, Any]:
        after = _label_counts(self.samples["gender"])
        excluded = self.excluded[["sample_id", "image", "gender"]]
        samples = self.samples
        return {
            "label_counts_before": self.before,
            "label_counts_after": after,
            "excluded_unlabelled": [
                {"sample_id": s, "image": i, "gender": g} for s, i, g in excluded.itertuples(index=False)
            ],
            "not_selected_counts": {g: self.available[g] - after[g] for g in GENDER_LABELS},
            "images_without_caption": {
                "en": int((samples["en_caption"] == "").sum()),
                "ar": int((samples["ar_caption"] == "").sum()),
            },
        }


def _select(
    usable: pd.DataFrame, num_samples: int | None, seed: int, keep_unlabelled: bool, n_rejected: int
) -> _Selection:
    before = _label_counts(usable["gender"])
    keep = usable["gender"].isin(GENDER_LABELS if keep_unlabelled else _LABELLED)
    excluded = usable[~keep]
    eligible = usable[keep].reset_index(drop=True)
    if len(eligible) == 0:
        raise DataError(
            f"None of the {len(usable)} usable images is labelled male or female (ambiguous: "
            f"{before['ambiguous']}, unknown: {before['unknown']}); pass --keep-unlabelled "
            "(keep_unlabelled=True from Python) to keep them, or give a gender column (--gender-column)."
        )
    available = _label_counts(eligible["gender"])
    if num_samples is not None and num_samples > len(eligible):
        per_label = ", ".join(f"{g}: {n}" for g, n in available.items() if n)
        raise DataError(
            f"--num-samples {num_samples} is more than the {len(eligible)} available samples "
            f"({per_label}; {len(excluded)} ambiguous/unknown excluded, {n_rejected} rows "
            "rejected); lower --num-samples" + (" or pass --keep-unlabelled." if len(excluded) else ".")
        )
    samples = eligible
    if num_samples is not None:
        chosen = stratified_indices(eligible["gender"].tolist(), num_samples, seed)
        samples = eligible.iloc[chosen].reset_index(drop=True)
    return _Selection(samples, excluded, before, available)


def prepare_samples(
    captions_csv: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PrepareConfig | None = None,
    **settings: Any,
) -> PrepareResult:
    """Turn a captions CSV and an image folder into ``samples.csv`` and ``prepare_report.json``.

    Parameters
    ----------
    captions_csv : str or path-like
        UTF-8 CSV with columns ``image`` (path relative to ``images_dir``), ``en_caption`` and
        ``ar_caption``; an image usually has several rows, one per caption pair.
    images_dir : str or path-like
        Folder the ``image`` paths are relative to.
    out_dir : str or path-like
        Folder for ``samples.csv`` and ``prepare_report.json`` (created if needed).
    config : PrepareConfig, optional
        Subsample size and seed, gender column, whether unlabelled images are kept
        (:class:`~sae_store.data.config.PrepareConfig`); ``settings`` give its fields by name instead.

    Returns
    -------
    PrepareResult
        The table, the report and where both were written.

    Raises
    ------
    DataError
        If the CSV or folder is missing or unreadable, a column is missing, a gender value is not
        recognised, no usable image is left, none is left after excluding unlabelled images, or
        ``num_samples`` exceeds what is available.
    """
    config = config or PrepareConfig(**settings)
    num_samples, seed, gender_column = config.num_samples, config.seed, config.gender_column
    captions_csv, images_dir, out_dir = Path(captions_csv), Path(images_dir), Path(out_dir)
    table = _read_captions(captions_csv, gender_column)
    if not images_dir.is_dir():
        raise DataError(f"Images folder {str(images_dir)!r} does not exist or is not a folder.")

    rejected: list[dict[str, Any]] = []
    images = _group_rows(table, gender_column, captions_csv, rejected)
    images_named = len(images)
    _drop_conflicting(images, rejected)
    _drop_bad_images(images, images_dir, rejected)
    rejected.sort(key=lambda r: r["row"])
    if not images:
        raise DataError(
            f"No usable image left in {str(captions_csv)!r} ({len(table)} rows, {images_named} "
            f"images named) with images in {str(images_dir)!r}: {_summarise_rejections(rejected)}."
        )
    usable, disagreements = _build_table(images, images_dir, gender_column)
    selection = _select(usable, num_samples, seed, config.keep_unlabelled, len(rejected))

    samples_path = write_samples(selection.samples, out_dir / SAMPLES_FILE)
    report_path = out_dir / REPORT_FILE
    report: dict[str, Any] = {
        "sae_store_version": __version__,
        "parameters": {
            "captions_csv": str(captions_csv),
            "images_dir": str(images_dir),
            "out_dir": str(out_dir),
            "num_samples": num_samples,
            "seed": seed,
            "gender_column": gender_column,
            "keep_unlabelled": config.keep_unlabelled,
        },
        "gender_source": f"column {gender_column!r}" if gender_column else "captions (en + ar pooled)",
        "row_numbering": "row 1 is the first data row after the CSV header",
        "rows_total": len(table),
        "images_named": images_named,
        "images_usable": len(usable),
        "samples_written": len(selection.samples),
        "rejected_counts": dict(Counter(r["reason"] for r in rejected)),
        "rejected_rows": rejected,
        **selection.report_fields(),
        "gender_column_disagreements": disagreements,
        "outputs": {"samples": str(samples_path), "report": str(report_path)},
    }
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.debug(  # `prepare` prints it
        "Wrote %d samples to %s; %d rows rejected, %d unlabelled images excluded; report: %s",
        len(selection.samples),
        samples_path,
        len(rejected),
        len(selection.excluded),
        report_path,
    )
    return PrepareResult(selection.samples, report, samples_path, report_path)
