"""A small generated FER-like data set: the quickstart's data and the test bed of sample selection.

Nothing is downloaded and nothing from ``../shared`` is used: every face is drawn in memory with PIL
``ImageDraw`` + numpy, so ``load_synthetic`` runs anywhere in seconds and gives byte-identical output for
the same arguments.

Design
------
*Faces.* An ellipse head (skin tone drawn from a palette, optional hair cap) with eyebrows, eyes with
pupils, a nose and a mouth, drawn at twice the output size and downsampled. An expression is a vector of
action parameters (brow raise, inner-brow raise, brows drawn together, eye openness, mouth curvature,
openness and width, upper-lip raise, nose wrinkle) equal to ``intensity * EXPRESSION_DELTAS[class]`` plus
a per-face "resting face" jitter (``RESTING_JITTER``), so weak expressions overlap with neutral and with
each other.  ``intensity`` is uniform on ``INTENSITY_RANGE`` for the six expressive classes and 0 for
neutral (neutral faces are resting faces only).  The deltas make the classic pairs genuinely close at low
intensity: fear vs surprise (both raise the brows and open eyes and mouth; fear also draws the brows
together, raises their inner ends and stretches the mouth wide), disgust vs anger (both lower the brows;
disgust also raises one side of the upper lip and wrinkles the nose), sadness vs neutral (inner brows up,
mouth corners slightly down).

*Nuisance variation.* In-plane rotation (``ROLL_DEGREES``), yaw mimicked by shifting the features
sideways and foreshortening one eye, head size and position, background (two-colour linear gradient plus
clutter shapes), lighting (gain, directional ramp, contrast), mild blur and Gaussian pixel noise.

*Long tail.* Class counts follow ``CLASS_PRIORS`` (RAF-DB-like but milder, so sets of a few dozen faces
still hold every class): happiness 30 %, neutral 20 %, sadness 16 %, surprise 11 %, anger 9 %, fear 7 %,
disgust 7 %.  Counts are exact (largest remainder, at least one face per class when ``n >= 7``), the order
is shuffled.  The target ``test`` split is class-balanced (so its accuracy equals its mean class accuracy
and every tail class has ~86 test faces).

*Shifted auxiliary standard.* The auxiliary annotators follow another standard: a face of class ``c``
whose intensity is below ``SHIFT_TABLE[c][1]`` is labelled ``SHIFT_TABLE[c][0]`` (fear -> surprise,
disgust -> anger, sadness -> neutral, anger -> neutral); on top of that ``RANDOM_NOISE_RATE`` of the
auxiliary faces get a uniformly random wrong label.  In expectation 21 % of auxiliary labels disagree
with the target standard (23 % at seed 0 with 1,200 faces): fear 58 %, disgust 58 %, sadness 52 %,
anger 33 % of their faces, 3 % of the other classes' faces; about 90 % of the disagreements are on the four
shifted classes and over half on the tail classes of ``sspa_hf.labels.TAIL_CLASSES``.  The ground truth is
the ``reference_label`` column (the label under the target standard); ``label != reference_label`` marks a
disagreement and ``label_noise`` says which kind ("clean", "shift" or "random").

*Difficulty.* Intensity below ~0.35 is hard to tell from neutral and from the paired class.  A narrow
ResNet (hidden sizes 16-32-64-128) trained from scratch for 10 epochs at 48 px reaches ~70 % test accuracy
on the 1,200 target faces, ~80 % with the auxiliary faces under their reference labels, and no gain with
the auxiliary faces under their shifted labels (fear, disgust and sadness recall drop): the gap
sample selection is meant to close.

*Columns.* ``image`` (PNG bytes of an RGB face), ``label`` (ClassLabel, canonical order), ``source``,
``id`` (``synthetic/<role>/<split>/<index>``), ``reference_label``, ``intensity`` and ``label_noise``.
Every face has its own sub-seed (seed, role, split, index), so face ``i`` only depends on its class.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from PIL import Image, ImageDraw, ImageFilter

from ..errors import UserInputError
from ..labels import EXPRESSIONS, LABEL2ID, NUM_CLASSES, class_label_feature

ROLES: tuple[str, ...] = ("target", "auxiliary")
SOURCES: dict[str, str] = {"target": "synthetic_target", "auxiliary": "synthetic_auxiliary"}
DEFAULT_TRAIN_SIZE = 1200
DEFAULT_TEST_SIZE = 600

# Long-tailed class priors, canonical order (anger, disgust, fear, happiness, neutral, sadness, surprise).
CLASS_PRIORS: dict[str, float] = {
    "anger": 0.09,
    "disgust": 0.07,
    "fear": 0.07,
    "happiness": 0.30,
    "neutral": 0.20,
    "sadness": 0.16,
    "surprise": 0.11,
}

# The auxiliary standard: class -> (label the auxiliary annotators give, intensity below which they give it).
SHIFT_TABLE: dict[str, tuple[str, float]] = {
    "fear": ("surprise", 0.65),
    "disgust": ("anger", 0.65),
    "sadness": ("neutral", 0.60),
    "anger": ("neutral", 0.45),
}
# Share of auxiliary faces (any class) that get a uniformly random wrong label on top of the shift.
RANDOM_NOISE_RATE = 0.03

# Intensity of the six expressive classes is uniform on this range; neutral faces have intensity 0.
INTENSITY_RANGE: tuple[float, float] = (0.20, 1.0)

# Action parameters of an expression, in the order of the vectors below.
ACTIONS: tuple[str, ...] = (
    "brow_raise",  # + brows up, - brows down
    "brow_inner",  # + inner ends up (sad, fearful), - inner ends down (the angry "V")
    "brow_gap",  # + brows drawn together
    "eye_open",  # + wide open, - squint
    "mouth_curve",  # + corners up (smile), - corners down
    "mouth_open",  # 0 closed, 1 wide open
    "mouth_width",  # + stretched, - pressed / rounded
    "lip_raise",  # upper lip raised on one side (sneer)
    "wrinkle",  # nose / glabella wrinkles
)
# Action parameters at full intensity, per class (neutral is all zeros).
EXPRESSION_DELTAS: dict[str, tuple[float, ...]] = {
    #            raise inner  gap   eye   curve open  width lip   wrinkle
    "anger": (-0.90, -1.00, 0.70, 0.05, -0.25, 0.00, -0.35, 0.00, 0.60),
    "disgust": (-0.55, -0.30, 0.35, -0.45, -0.45, 0.15, 0.00, 1.00, 1.00),
    "fear": (0.65, 0.80, 0.70, 0.75, -0.25, 0.45, 0.60, 0.00, 0.00),
    "happiness": (0.10, 0.00, 0.00, -0.35, 1.00, 0.35, 0.40, 0.00, 0.00),
    "neutral": (0.0,) * 9,
    "sadness": (-0.10, 1.00, 0.25, -0.35, -0.75, 0.00, -0.10, 0.00, 0.00),
    "surprise": (1.00, 0.00, -0.10, 0.90, 0.00, 0.90, -0.20, 0.00, 0.00),
}
# Standard deviation of the per-face resting-face jitter added to every action parameter.
RESTING_JITTER: tuple[float, ...] = (0.10, 0.10, 0.10, 0.10, 0.10, 0.04, 0.08, 0.05, 0.05)

ROLL_DEGREES = 10.0  # in-plane rotation, uniform on +-ROLL_DEGREES
YAW_RANGE = 0.5  # sideways feature shift / eye foreshortening, uniform on +-YAW_RANGE
SCALE_RANGE: tuple[float, float] = (0.88, 1.06)  # head size relative to the image

_SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 103), (161, 102, 72), (114, 72, 50), (86, 56, 40)],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(20, 16, 14), (60, 40, 28), (110, 72, 40), (170, 130, 80), (210, 180, 120), (140, 60, 30), (120, 120, 120)],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array([(60, 40, 25), (40, 70, 110), (60, 100, 60), (30, 25, 20)], dtype=np.float64)
_ROLE_CODES = {"target": 1, "auxiliary": 2}
_SPLIT_CODES = {"train": 1, "test": 2}
_SUPERSAMPLE = 2


def class_counts(n: int, priors: dict[str, float] | None = None) -> list[int]:
    """Exact per-class counts for ``n`` faces (largest remainder; every class gets one when ``n >= 7``)."""
    p = np.array([(priors or CLASS_PRIORS)[name] for name in EXPRESSIONS], dtype=np.float64)
    p = p / p.sum()
    raw = p * n
    counts = np.floor(raw).astype(np.int64)
    order = sorted(range(NUM_CLASSES), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[: n - int(counts.sum())]:
        counts[k] += 1
    if n >= NUM_CLASSES:
        for k in range(NUM_CLASSES):
            if counts[k] == 0:
                counts[int(np.argmax(counts))] -= 1
                counts[k] = 1
    return [int(c) for c in counts]


def auxiliary_label(reference: int, intensity: float, rng: np.random.Generator) -> tuple[int, str]:
    """The label an auxiliary annotator gives a face of class ``reference``, and the kind of disagreement."""
    label, kind = reference, "clean"
    name = EXPRESSIONS[reference]
    if name in SHIFT_TABLE and intensity < SHIFT_TABLE[name][1]:
        label, kind = LABEL2ID[SHIFT_TABLE[name][0]], "shift"
    if rng.random() < RANDOM_NOISE_RATE:
        others = [k for k in range(NUM_CLASSES) if k != reference]
        label, kind = int(others[int(rng.integers(len(others)))]), "random"
    return label, kind


def _colour(rgb: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
    c = np.clip(np.rint(rgb), 0, 255).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]), alpha)


def _ramp(size: int, theta: float) -> np.ndarray:
    """A size x size linear ramp in [-0.5, 0.5] along direction ``theta`` (for gradients and lighting)."""
    line = np.linspace(-0.5, 0.5, size)
    return line[None, :] * math.cos(theta) + line[:, None] * math.sin(theta)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A two-colour linear gradient at a random angle with a few random clutter shapes."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * math.pi)
    t = np.clip(_ramp(size, theta) + 0.5, 0, 1)[..., None]
    arr = c0 + (c1 - c0) * t
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(int(rng.integers(2, 8))):
        col = _colour(rng.uniform(0, 255, 3), int(rng.integers(90, 230)))
        x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
        w, h = rng.uniform(0.1, 0.5, 2) * size
        kind = int(rng.integers(4))
        if kind == 0:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=col)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=col)
        elif kind == 2:
            draw.line((x0, y0, x0 + w, y0 + h), fill=col, width=max(1, int(rng.uniform(0.01, 0.05) * size)))
        else:
            pts = [tuple(p) for p in rng.uniform(-0.1, 1.1, (3, 2)) * size]
            draw.polygon(pts, fill=col)
    return Image.alpha_composite(img, layer)


def _parabola(xs: np.ndarray, corner_y: float, centre_y: float) -> np.ndarray:
    """Heights of a parabola through both corners (x = +-1) and the centre (x = 0): a lip line."""
    return corner_y * xs**2 + centre_y * (1 - xs**2)


def _points(xs: np.ndarray, ys: np.ndarray) -> list[tuple[float, float]]:
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _draw_face(rng: np.random.Generator, size: int, actions: np.ndarray) -> Image.Image:
    """An RGBA layer with one face (transparent around it), already rotated in-plane."""
    (brow_raise, brow_inner, brow_gap, eye_open, mouth_curve, mouth_open, mouth_width, lip_raise, wrinkle) = actions
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    scale = rng.uniform(*SCALE_RANGE)
    cx = size * (0.5 + rng.uniform(-0.04, 0.04))
    cy = size * (0.52 + rng.uniform(-0.04, 0.04))
    a, b = 0.37 * size * scale, 0.46 * size * scale
    yaw = rng.uniform(-YAW_RANGE, YAW_RANGE)
    fx = cx + yaw * 0.15 * a

    skin = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] * rng.uniform(0.9, 1.08) + rng.normal(0, 6, 3)
    hair = _HAIR_COLOURS[int(rng.integers(len(_HAIR_COLOURS)))] + rng.normal(0, 8, 3)
    dark = np.minimum(skin, hair) * 0.35
    line_w = max(1, round(0.055 * a))
    thin, crease = max(1, line_w // 2), _colour(skin * 0.62)
    has_hair = rng.random() < 0.75
    if has_hair:
        draw.ellipse((cx - 1.07 * a, cy - 1.08 * b, cx + 1.07 * a, cy + 0.35 * b), fill=_colour(hair))
    draw.ellipse((cx - a, cy - b, cx + a, cy + b), fill=_colour(skin))
    if has_hair:  # fringe: a chord of the head ellipse that stays above the brows
        start = rng.uniform(205, 222)
        draw.chord((cx - a, cy - b, cx + a, cy + b), start, 540 - start, fill=_colour(hair))

    # Eyes.
    eye_dx = 0.38 * a * rng.uniform(0.92, 1.08)
    eye_y = cy - 0.10 * b + rng.normal(0, 0.02) * b
    eye_w = 0.15 * a * rng.uniform(0.9, 1.1)
    eye_h = 0.07 * b * rng.uniform(0.85, 1.15) * max(0.12, 1 + 1.2 * eye_open)
    iris = _IRIS_COLOURS[int(rng.integers(len(_IRIS_COLOURS)))]
    gaze = rng.uniform(-0.3, 0.3, 2)
    eye_xs = []
    for side in (-1, 1):
        ex = fx + side * eye_dx * (1 + side * 0.2 * yaw)
        ew = eye_w * (1 + side * 0.25 * yaw)
        eye_xs.append(ex)
        draw.ellipse((ex - ew, eye_y - eye_h, ex + ew, eye_y + eye_h), fill=(245, 245, 240, 255), outline=_colour(dark))
        r = min(0.55 * ew, max(eye_h * 0.9, 1.0))
        px, py = ex + gaze[0] * (ew - r), eye_y + gaze[1] * max(eye_h - r, 0)
        draw.ellipse((px - r, py - r, px + r, py + r), fill=_colour(iris))
        rp = 0.45 * r
        draw.ellipse((px - rp, py - rp, px + rp, py + rp), fill=(10, 10, 10, 255))

    # Eyebrows: inner end, arched middle, outer end.
    brow_y = cy - 0.33 * b - brow_raise * 0.15 * b + rng.normal(0, 0.02) * b
    brow_col = _colour(np.minimum(hair * 0.5, 60))
    brow_w = max(1, round(0.10 * a * rng.uniform(0.85, 1.2)))
    for side, ex in zip((-1, 1), eye_xs, strict=True):
        inner_x = ex - side * (0.16 * a + brow_gap * 0.10 * a)
        outer_x = ex + side * 0.22 * a
        inner_y = brow_y - brow_inner * 0.11 * b
        outer_y = brow_y + brow_inner * 0.02 * b
        mid = ((inner_x + outer_x) / 2, (inner_y + outer_y) / 2 - 0.04 * b * (1 + 0.4 * brow_raise))
        draw.line([(inner_x, inner_y), mid, (outer_x, outer_y)], fill=brow_col, width=brow_w, joint="curve")

    # Wrinkles: horizontal lines across the nose bridge and vertical (glabella) lines between the brows.
    if wrinkle > 0.2:
        half, gx = 0.06 * a * min(wrinkle, 1.2), 0.04 * a
        for k in range(1 + int(wrinkle > 0.5) + int(wrinkle > 0.8)):
            y = cy - 0.02 * b + k * 0.045 * b
            draw.line([(fx - half, y), (fx + half, y + 0.01 * b)], fill=crease, width=thin)
        for side in (-1, 1):
            glabella_end = (fx + side * gx * 0.6, brow_y + 0.12 * b * min(wrinkle, 1.2))
            draw.line([(fx + side * gx, brow_y - 0.02 * b), glabella_end], fill=crease, width=thin)

    # Nose.
    nose_y = cy + 0.18 * b
    draw.line([(fx, cy - 0.02 * b), (fx + 0.04 * a + yaw * 0.04 * a, nose_y)], fill=_colour(skin * 0.7), width=line_w)
    draw.line([(fx - 0.07 * a, nose_y), (fx + 0.07 * a, nose_y)], fill=_colour(skin * 0.6), width=line_w)
    if wrinkle > 0.4 and lip_raise > 0.3:  # nasolabial folds of the sneer
        for side in (-1, 1):
            fold_end = (fx + side * 0.24 * a, nose_y + 0.22 * b * min(wrinkle, 1))
            draw.line([(fx + side * 0.10 * a, nose_y - 0.01 * b), fold_end], fill=crease, width=thin)

    # Mouth: upper and lower lip curves through the corners, filled dark when open.
    my = cy + 0.47 * b + rng.normal(0, 0.02) * b
    mw = 0.34 * a * rng.uniform(0.9, 1.1) * max(0.4, 1 + mouth_width)
    opening = max(0.0, mouth_open) * 0.28 * b
    corner = -mouth_curve * 0.14 * b
    xs = np.linspace(-1, 1, 15)
    sneer_side = 1 if rng.random() < 0.5 else -1
    sneer = max(0.0, lip_raise) * 0.09 * b * np.exp(-(((xs - 0.45 * sneer_side) / 0.35) ** 2))
    upper = my + _parabola(xs, corner, mouth_curve * 0.04 * b - 0.35 * opening) - sneer
    lower = my + _parabola(xs, corner, mouth_curve * 0.07 * b + 0.65 * opening)
    px = fx + xs * mw
    upper_pts, lower_pts = _points(px, upper), _points(px, lower)
    lip = _colour(np.minimum(skin * np.array([0.7, 0.4, 0.4]), (150, 60, 60)))
    if opening + float(sneer.max()) > 0.02 * b:
        draw.polygon(upper_pts + lower_pts[::-1], fill=(60, 15, 20, 255))
        if mouth_curve > 0.35 and opening > 0.04 * b:  # teeth of a broad smile
            teeth = upper + 0.35 * (lower - upper)
            draw.polygon(upper_pts + _points(px, teeth)[::-1], fill=(240, 238, 228, 255))
    draw.line(upper_pts, fill=lip, width=line_w + 2, joint="curve")
    draw.line(lower_pts, fill=lip, width=line_w + 2, joint="curve")

    roll = rng.uniform(-ROLL_DEGREES, ROLL_DEGREES)
    return layer.rotate(roll, resample=Image.Resampling.BILINEAR, center=(cx, cy))


def render_face(rng: np.random.Generator, actions: np.ndarray, image_size: int) -> Image.Image:
    """One RGB face of the given action parameters on a random background, with lighting and noise."""
    size = image_size * _SUPERSAMPLE
    canvas = Image.alpha_composite(_background(rng, size), _draw_face(rng, size, actions)).convert("RGB")
    img = canvas.resize((image_size, image_size), Image.Resampling.BOX)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    arr = np.asarray(img, dtype=np.float64)
    theta = rng.uniform(0, 2 * math.pi)
    ramp = 1 + rng.uniform(0, 0.35) * _ramp(image_size, theta) * 2
    arr = arr * rng.uniform(0.75, 1.2) * ramp[..., None]
    mean = arr.mean()
    arr = (arr - mean) * rng.uniform(0.75, 1.2) + mean
    arr = arr + rng.normal(0, rng.uniform(1.0, 8.0), arr.shape)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _generate_split(role: str, split: str, n: int, image_size: int, seed: int, balanced: bool) -> dict[str, list]:
    """Columns of one split: exact class counts, shuffled; every face from its own sub-seed."""
    split_ss = np.random.SeedSequence(seed, spawn_key=(_ROLE_CODES[role], _SPLIT_CODES[split]))
    priors = {name: 1.0 for name in EXPRESSIONS} if balanced else None
    counts = class_counts(n, priors)
    labels = np.repeat(np.arange(NUM_CLASSES), counts)
    np.random.default_rng(split_ss).shuffle(labels)
    cols: dict[str, list[Any]] = {
        "image": [],
        "label": [],
        "source": [],
        "id": [],
        "reference_label": [],
        "intensity": [],
        "label_noise": [],
    }
    jitter = np.array(RESTING_JITTER)
    for i, ref in enumerate(labels.tolist()):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*split_ss.spawn_key, i)))
        name = EXPRESSIONS[ref]
        intensity = 0.0 if name == "neutral" else float(rng.uniform(*INTENSITY_RANGE))
        actions = intensity * np.array(EXPRESSION_DELTAS[name]) + rng.normal(0, 1, len(ACTIONS)) * jitter
        label, kind = auxiliary_label(ref, intensity, rng) if role == "auxiliary" else (ref, "clean")
        img = render_face(rng, actions, image_size)
        cols["image"].append({"bytes": _png_bytes(img), "path": None})
        cols["label"].append(label)
        cols["source"].append(SOURCES[role])
        cols["id"].append(f"synthetic/{role}/{split}/{i:06d}")
        cols["reference_label"].append(ref)
        cols["intensity"].append(intensity)
        cols["label_noise"].append(kind)
    return cols


def synthetic_features() -> Features:
    """The features of every synthetic split (target and auxiliary share them, so they concatenate)."""
    return Features(
        {
            "image": ImageFeature(),
            "label": class_label_feature(),
            "source": Value("string"),
            "id": Value("string"),
            "reference_label": Value("int64"),
            "intensity": Value("float64"),
            "label_noise": Value("string"),
        }
    )


def _as_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; decimal strings are accepted (specs such as ``?n=300`` give strings)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserInputError(f"synthetic {name} must be an integer >= {minimum}, got {value!r}")
    return value


def load_synthetic(
    role: str = "target",
    n: int | None = None,
    image_size: int = 48,
    seed: int = 0,
    *,
    n_test: int | None = None,
) -> DatasetDict:
    """The synthetic FER data set of one role as a ``datasets.DatasetDict``.

    ``role="target"`` gives ``train`` (``n`` faces, default 1200, long-tailed) and a class-balanced ``test``
    (``n_test`` faces, default 600) labelled under the target standard; ``role="auxiliary"`` gives ``train``
    (``n`` faces, default 1200, long-tailed) labelled under the shifted standard of ``SHIFT_TABLE``.  Same
    arguments give byte-identical images and labels; the two roles and the two splits are independent draws
    (and face ``i`` of a split does not depend on ``n``, only its class does).
    """
    if role not in ROLES:
        raise UserInputError(f"synthetic role must be one of {', '.join(ROLES)}, got {role!r}")
    n = _as_int("n", DEFAULT_TRAIN_SIZE if n is None else n, 1)
    n_test = _as_int("n_test", DEFAULT_TEST_SIZE if n_test is None else n_test, 1)
    image_size = _as_int("image_size", image_size, 8)
    seed = _as_int("seed", seed, 0)
    features = synthetic_features()
    splits = {"train": _generate_split(role, "train", n, image_size, seed, balanced=False)}
    if role == "target":
        splits["test"] = _generate_split(role, "test", n_test, image_size, seed, balanced=True)
    return DatasetDict({name: Dataset.from_dict(cols, features=features) for name, cols in splits.items()})
