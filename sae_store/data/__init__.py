"""The samples table: gender labelling of bilingual captions, image checks, demo data.

The public API, re-exported here:

* :func:`prepare_samples` - captions CSV + image folder -> ``samples.csv`` + ``prepare_report.json``
* :func:`read_samples`, :func:`write_samples`, :class:`SamplesTable` - the table's contract
* :func:`count_gender_terms`, :func:`label_captions`, :func:`normalize_gender_value` - gender words
* :func:`make_demo_data` - a small deterministic captions set with images
* :func:`check_image`, :func:`load_image`, :func:`load_images`, :func:`square` - image files
"""

from typing import TYPE_CHECKING

from sae_store._lazy import lazy_exports

if TYPE_CHECKING:
    from sae_store.data.demo import make_demo_data
    from sae_store.data.gender import (
        GENDER_LABELS,
        GenderCounts,
        GenderLabel,
        count_gender_terms,
        label_captions,
        normalize_arabic,
        normalize_gender_value,
    )
    from sae_store.data.images import check_image, load_image, load_images, square
    from sae_store.data.prepare import PrepareResult, prepare_samples
    from sae_store.data.samples import (
        SAMPLE_COLUMNS,
        SamplesTable,
        read_samples,
        validate_samples,
        write_samples,
    )

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "demo": ("make_demo_data",),
        "gender": (
            "GENDER_LABELS",
            "GenderCounts",
            "GenderLabel",
            "count_gender_terms",
            "label_captions",
            "normalize_arabic",
            "normalize_gender_value",
        ),
        "images": ("check_image", "load_image", "load_images", "square"),
        "prepare": ("PrepareResult", "prepare_samples"),
        "samples": ("SAMPLE_COLUMNS", "SamplesTable", "read_samples", "validate_samples", "write_samples"),
    },
)
