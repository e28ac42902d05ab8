"""A small, deterministic bilingual captions set with images, for demos and tests.

Each image is a 64x64 drawing of a person (or two) on a plain background. The shirt colour is the
planted visual cue: 95 % of the people captioned as women wear red, 95 % of those captioned as men
wear blue, the rest the other colour. The captions (three English/Arabic pairs per image) name the
gender in natural sentences. A few realistic faults are included so that the prepare report has
something to show: one corrupt (truncated) image file, one row naming an image that does not exist,
one row with an empty image name, two images whose captions name a man and a woman (ambiguous) and
one image whose captions name no gender (unknown).
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw

from sae_store.data.config import DemoDataConfig

DEMO_CAPTIONS_FILE = "captions.csv"
DEMO_IMAGES_DIR = "images"
#: Probability that a person wears the colour typical of the gender in their captions.
CUE_STRENGTH = 0.95
_SIZE = 64
_COLOURS = {"red": ((200, 40, 40), "أحمر"), "blue": ((40, 70, 200), "أزرق")}
_TYPICAL = {"female": "red", "male": "blue"}

# (English, Arabic) caption pairs; "{c}"/"{c_ar}" is the shirt colour. Some Arabic carries tashkeel.
_CAPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "male": (
        ("A man standing in a park.", "رجل يقف في الحديقة."),
        ("A boy playing with a ball.", "ولد يلعب بالكرة."),
        ("A young man smiling at the camera.", "شاب يبتسم للكاميرا."),
        ("The man is wearing a {c} shirt.", "الرجل يرتدي قميصا {c_ar}."),
        ("He is holding a cup of coffee.", "إنه يحمل كوبا من القهوة."),
        ("A man reading a book.", "رَجُلٌ يَقْرَأُ كِتَابًا."),
    ),
    "female": (
        ("A woman standing in a park.", "امرأة تقف في الحديقة."),
        ("A girl playing with a ball.", "فتاة تلعب بالكرة."),
        ("A young girl smiling at the camera.", "بنت صغيرة تبتسم للكاميرا."),
        ("The woman is wearing a {c} shirt.", "المرأة ترتدي قميصا {c_ar}."),
        ("A lady is sitting on a bench.", "سيدة تجلس على مقعد."),
        ("A woman reading a book.", "امْرَأَةٌ تَقْرَأُ كِتَابًا."),
    ),
    "ambiguous": (
        ("A man and a woman walking together.", "رجل وامرأة يمشيان معا."),
        ("A boy and a girl playing in the sand.", "ولد وبنت يلعبان في الرمل."),
        ("Two people, a man and a woman, standing side by side.", "شخصان، رجل وامرأة، يقفان جنبا إلى جنب."),
    ),
    "unknown": (
        ("A person walking a dog.", "شخص يمشي مع كلب."),
        ("Someone riding a bicycle.", "شخص يركب دراجة."),
        ("A figure standing near a tree.", "شخص يقف بالقرب من شجرة."),
    ),
}
_PER_IMAGE = 3


def _draw_person(draw: ImageDraw.ImageDraw, x: int, shirt: tuple[int, int, int], rng: random.Random) -> None:
    skin = rng.choice([(241, 194, 167), (198, 134, 103), (141, 85, 54), (224, 172, 105)])
    draw.ellipse((x - 6, 8, x + 6, 20), fill=skin)  # head
    draw.rectangle((x - 11, 21, x + 11, 44), fill=shirt)  # torso: the cue, large enough to see at 32x32
    draw.line((x - 11, 24, x - 16, 38), fill=skin, width=3)  # arms
    draw.line((x + 11, 24, x + 16, 38), fill=skin, width=3)
    draw.line((x - 4, 44, x - 5, 56), fill=(50, 50, 60), width=4)  # legs
    draw.line((x + 4, 44, x + 5, 56), fill=(50, 50, 60), width=4)


def _render(kind: str, rng: random.Random) -> tuple[bytes, str]:
    background = tuple(rng.randint(170, 240) for _ in range(3))
    im = Image.new("RGB", (_SIZE, _SIZE), background)
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 56, _SIZE, _SIZE), fill=(90, 150, 70))  # grass
    if kind == "ambiguous":
        _draw_person(draw, 18, _COLOURS["blue"][0], rng)
        _draw_person(draw, 46, _COLOURS["red"][0], rng)
        colour = "blue"
    else:
        if kind in _TYPICAL:
            typical = _TYPICAL[kind]
            other = "blue" if typical == "red" else "red"
            colour = typical if rng.random() < CUE_STRENGTH else other
        else:
            colour = rng.choice(sorted(_COLOURS))
        _draw_person(draw, 32 + rng.randint(-10, 10), _COLOURS[colour][0], rng)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue(), colour


def _captions(kind: str, colour: str, rng: random.Random) -> list[tuple[str, str]]:
    pairs = rng.sample(_CAPTIONS[kind], _PER_IMAGE)
    ar_colour = _COLOURS[colour][1]
    return [(en.format(c=colour), ar.format(c_ar=ar_colour)) for en, ar in pairs]


def _kinds(n_images: int, rng: random.Random) -> list[str]:
    # Fixed numbers of faulty images; the rest split evenly between male and female.
    regular = n_images - 4
    kinds = ["male"] * (regular // 2) + ["female"] * (regular - regular // 2)
    kinds += ["ambiguous", "ambiguous", "unknown", "corrupt"]
    rng.shuffle(kinds)
    return kinds


def make_demo_data(out_dir: str | os.PathLike[str], *, n_images: int = 48, seed: int = 0) -> Path:
    """Write a demo captions CSV and its images.

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write ``captions.csv`` and ``images/*.png`` into (created if needed).
    n_images : int
        Number of image files, at least 8: one corrupt, two ambiguous, one unknown, and the rest
        split evenly between images captioned as male and as female.
    seed : int
        Seed; the same ``n_images`` and seed give byte-identical files.

    Returns
    -------
    pathlib.Path
        ``out_dir`` (holding ``captions.csv`` and ``images/``).

    Raises
    ------
    ConfigError
        If ``n_images`` is below 8.
    """
    DemoDataConfig(n_images=n_images, seed=seed)  # checked by their declarations
    out = Path(out_dir)
    images_dir = out / DEMO_IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows: list[tuple[str, str, str]] = []
    for i, kind in enumerate(_kinds(n_images, rng)):
        name = f"img_{i:04d}.png"
        png, colour = _render("male" if kind == "corrupt" else kind, rng)
        if kind == "corrupt":
            png = png[: len(png) // 2]  # a truncated download
        (images_dir / name).write_bytes(png)
        caption_kind = rng.choice(("male", "female")) if kind == "corrupt" else kind
        rows += [(name, en, ar) for en, ar in _captions(caption_kind, colour, rng)]
    rows.insert(rng.randrange(len(rows)), (f"img_{n_images:04d}.png", *_CAPTIONS["male"][0]))
    rows.insert(rng.randrange(len(rows)), ("", *_CAPTIONS["female"][0]))
    with open(out / DEMO_CAPTIONS_FILE, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "en_caption", "ar_caption"])
        writer.writerows(rows)
    return out
