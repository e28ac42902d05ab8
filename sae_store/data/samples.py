"""The samples table (``samples.csv``): one row per image, the input of activation extraction."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from sae_store.data.gender import GENDER_LABELS
from sae_store.errors import DataError


class SamplesTable:
    """The contract of ``samples.csv``, written by :func:`prepare_samples` and read by the store.

    A UTF-8 CSV (no index column) with one row per image and at least these columns, in this order:

    ``sample_id``
        Unique, non-empty string identifying the image: the file stem when no other image shares
        it, otherwise the image path relative to the images folder. Stable across subsamples.
    ``image``
        The image path relative to the images folder, exactly as written in the captions CSV.
    ``image_path``
        The absolute path of the image file when the table was written.
    ``gender``
        One of ``male``, ``female``, ``ambiguous`` (captions name both) or ``unknown`` (captions
        name neither), from the captions of both languages or from a provided gender column.
    ``en_caption``, ``ar_caption``
        All English (Arabic) captions of the image, joined by ``"\\n"``; empty if it has none.

    Extra columns are allowed and kept; every value is read back as a string.
    """

    SAMPLE_ID = "sample_id"
    IMAGE = "image"
    IMAGE_PATH = "image_path"
    GENDER = "gender"
    EN_CAPTION = "en_caption"
    AR_CAPTION = "ar_caption"
    COLUMNS: tuple[str, ...] = (SAMPLE_ID, IMAGE, IMAGE_PATH, GENDER, EN_CAPTION, AR_CAPTION)
    #: Separator between the captions of one image in ``en_caption`` and ``ar_caption``.
    CAPTION_SEPARATOR = "\n"


#: The required columns of ``samples.csv``, in order.
SAMPLE_COLUMNS: tuple[str, ...] = SamplesTable.COLUMNS


def validate_samples(df: pd.DataFrame, *, source: str = "samples table") -> None:
    """Check a samples table against :class:`SamplesTable`.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    source : str
        How messages name the table (e.g. its file path).

    Raises
    ------
    DataError
        If a column is missing, the table is empty, a sample id is empty or repeated, or a gender
        value is not one of the labels.
    """
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{source} lacks the column(s) {missing}; found {list(df.columns)}. "
            f"A samples table needs {list(SAMPLE_COLUMNS)} (write it with `sae-store prepare`)."
        )
    if len(df) == 0:
        raise DataError(f"{source} has no rows; it needs at least one sample.")
    ids = df[SamplesTable.SAMPLE_ID].astype(str)
    empty = [i + 1 for i, v in enumerate(ids) if not v.strip()]
    if empty:
        raise DataError(f"{source} has an empty 'sample_id' in data row(s) {empty[:10]}.")
    repeated = ids[ids.duplicated()].unique().tolist()
    if repeated:
        raise DataError(
            f"{source} has repeated sample ids in column 'sample_id': {repeated[:10]}; "
            "each image must appear once."
        )
    genders = df[SamplesTable.GENDER].astype(str).tolist()
    for row, value in enumerate(genders, start=1):
        if value not in GENDER_LABELS:
            raise DataError(
                f"{source} has the value {value!r} in column 'gender' (data row {row}); "
                f"allowed values are {list(GENDER_LABELS)}."
            )


def read_samples(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a ``samples.csv``.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    pandas.DataFrame
        The table with string columns, the contract's columns first, then any extra columns.

    Raises
    ------
    DataError
        If the file is missing or unreadable, or the table breaks the :class:`SamplesTable` contract.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise DataError(f"Samples table {str(path)!r} {what}; create it with `sae-store prepare`.")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"Cannot read samples table {str(path)!r}: {e}") from e
    validate_samples(df, source=f"Samples table {str(path)!r}")
    extra = [c for c in df.columns if c not in SAMPLE_COLUMNS]
    return df[[*SAMPLE_COLUMNS, *extra]]


def write_samples(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write a samples table as UTF-8 CSV, atomically.

    Parameters
    ----------
    df : pandas.DataFrame
        A table following :class:`SamplesTable`.
    path : str or path-like
        Destination file; its folder is created if needed.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    DataError
        If the table breaks the contract.
    """
    path = Path(path)
    validate_samples(df)
    extra = [c for c in df.columns if c not in SAMPLE_COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash never leaves a half-written table.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            df[[*SAMPLE_COLUMNS, *extra]].to_csv(f, index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
