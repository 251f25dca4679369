"""FER2013: `fer2013.csv` (emotion, pixels, Usage) or its common image-folder export `{train,test}/<emotion>/*.jpg`.

Usage maps to splits: Training -> train, PublicTest -> validation, PrivateTest -> test. FER2013 holds identical
images, some across splits; with `dedup=1` (the default for the CSV) training rows whose pixels also occur in an
evaluation split are left out (and counted).
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Value
from PIL import Image
from tqdm.auto import tqdm

from ...errors import UserInputError
from ..schema import (
    SPLIT_ALIASES,
    Options,
    RawSource,
    ReadContext,
    finish,
    label_ids,
    list_dirs,
    list_images,
    make_split,
)

#: FER2013 emotion codes onto the canonical names.
FER2013_LABELS: dict[int, str] = {
    0: "anger",
    1: "disgust",
    2: "fear",
    3: "happiness",
    4: "sadness",
    5: "surprise",
    6: "neutral",
}
#: The class-folder names of the image-folder export, by FER2013 code.
FER2013_FOLDERS: dict[str, int] = {
    "angry": 0,
    "disgust": 1,
    "fear": 2,
    "happy": 3,
    "sad": 4,
    "surprise": 5,
    "neutral": 6,
}
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
CSV_COLUMNS = ("emotion", "pixels", "Usage")
SIDE = 48
CSV_LAYOUT = (
    "FER2013: fer2013.csv with header emotion,pixels,Usage (48x48 grey pixels; Usage Training/PublicTest/PrivateTest)"
)
FOLDER_LAYOUT = "FER2013 image-folder export: ROOT/{train,test}/{" + ",".join(FER2013_FOLDERS) + "}/<Usage>_<n>.jpg"
DUPLICATE = "duplicate of an evaluation image"


@dataclass
class Fer2013Row:
    """One parsed row of fer2013.csv; `png` is None when its pixels were unusable (skip mode)."""

    line: int
    index: int  # data-row position, 0-based (the `fer2013_<index>` id)
    code: int
    split: str
    png: bytes | None
    sha1: str


def iter_fer2013_csv(csv_path: Path, ctx: ReadContext) -> Iterator[Fer2013Row]:
    """Parse fer2013.csv row by row, checking header, emotion code, pixel count and Usage."""
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != list(CSV_COLUMNS):
            raise UserInputError(f"{csv_path}:1: header {header} is not {','.join(CSV_COLUMNS)} ({CSV_LAYOUT})")
        for index, row in enumerate(tqdm(reader, desc=csv_path.name, unit=" rows", disable=None, leave=False)):
            where = f"{csv_path}:{reader.line_num}"
            if len(row) < 3:
                raise UserInputError(f"{where}: expected emotion,pixels,Usage, got {len(row)} fields")
            code, pixels, usage = row[0].strip(), row[1], row[2].strip()
            if code not in {str(k) for k in FER2013_LABELS}:
                raise UserInputError(f"{where}: unknown FER2013 emotion {code!r} (expected 0..6)")
            if usage not in USAGE_SPLITS:
                raise UserInputError(f"{where}: unknown Usage {usage!r} (expected {', '.join(USAGE_SPLITS)})")
            array = _pixels(pixels)
            png, sha1 = None, ""
            if array is None:
                message = f"{where}: pixels are not {SIDE * SIDE} integers in 0..255 (unreadable image)"
                ctx.bad_image(where, "unreadable pixels", message)
            else:
                png, sha1 = encode_png(array), hashlib.sha1(array.tobytes()).hexdigest()
            yield Fer2013Row(reader.line_num, index, int(code), USAGE_SPLITS[usage], png, sha1)


def _pixels(text: str) -> np.ndarray | None:
    """The 48x48 uint8 image of a `pixels` field, or None unless it is exactly 2304 integers in 0..255."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (then stops) at the first token that is not an integer
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")  # text mode: 3x faster than split()
        except (ValueError, DeprecationWarning):
            return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG bytes of a grey image (the CSV's pixels are exact; PNG keeps them so)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def find_csv(path: Path, name: str = "fer2013.csv") -> Path | None:
    """`path` if it is a file, else `path/name` or `path/fer2013/name` when present."""
    if path.is_file():
        return path
    for candidate in (path / name, path / "fer2013" / name):
        if candidate.is_file():
            return candidate
    return None


def dedup_train(split_of: list[str], sha1: list[str]) -> list[bool]:
    """Keep-mask dropping training rows whose pixel hash occurs in a non-training split."""
    evaluation = {h for s, h in zip(split_of, sha1, strict=True) if s != "train" and h}
    return [not (s == "train" and h in evaluation) for s, h in zip(split_of, sha1, strict=True)]


def read_fer2013(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read fer2013.csv (option `dedup`, default 1) or the image-folder export."""
    csv_path = find_csv(path)
    if csv_path is not None:
        dedup = options.flag("dedup", True)
        options.done()
        return _read_csv(csv_path, dedup, ctx)
    if path.is_dir() and (path / "train").is_dir():
        options.done()
        return _read_export(path)
    raise UserInputError(
        f"fer2013: neither {path / 'fer2013.csv'} nor {path / 'train'} found "
        f"(expected {CSV_LAYOUT}; or {FOLDER_LAYOUT})"
    )


def _read_csv(csv_path: Path, dedup: bool, ctx: ReadContext) -> RawSource:
    ids = label_ids(FER2013_LABELS)
    rows = [row for row in iter_fer2013_csv(csv_path, ctx) if row.png is not None]
    keep = dedup_train([r.split for r in rows], [r.sha1 for r in rows]) if dedup else [True] * len(rows)
    splits, dropped = {}, {}
    for split in dict.fromkeys(USAGE_SPLITS.values()):
        chosen = [r for r, k in zip(rows, keep, strict=True) if r.split == split and k]
        n_dup = sum(1 for r, k in zip(rows, keep, strict=True) if r.split == split and not k)
        if not chosen and split != "train":
            continue
        cols = {
            "image": [{"bytes": r.png, "path": None} for r in chosen],
            "label": [ids[r.code] for r in chosen],
            "id": [f"fer2013_{r.index:05d}" for r in chosen],
            "pixel_sha1": [r.sha1 for r in chosen],
        }
        splits[split] = make_split(cols, {"pixel_sha1": Value("string")}, f"fer2013 {split}", source="fer2013")
        dropped[split] = {DUPLICATE: n_dup} if n_dup else {}
    return RawSource(name="fer2013", splits=finish(splits), meta_files=[csv_path], dropped=dropped, bad=list(ctx.bad))


def _read_export(root: Path) -> RawSource:
    ids = label_ids(FER2013_LABELS)
    columns: dict[str, dict[str, list]] = {}
    for split_dir in list_dirs(root):
        folder_split = SPLIT_ALIASES.get(split_dir.name.lower())
        if folder_split is None:
            continue
        for class_dir in list_dirs(split_dir):
            code = FER2013_FOLDERS.get(class_dir.name.lower())
            if code is None:
                raise UserInputError(
                    f"fer2013: unknown class folder {class_dir} (expected one of {', '.join(FER2013_FOLDERS)})"
                )
            for image in list_images(class_dir):
                # The export keeps the Usage in the file name: test/ mixes PublicTest_* and PrivateTest_*.
                split = USAGE_SPLITS.get(image.name.split("_", 1)[0], folder_split)
                cols = columns.setdefault(split, {"image": [], "label": [], "id": []})
                cols["image"].append(str(image))
                cols["label"].append(ids[code])
                cols["id"].append(image.relative_to(root).as_posix())
    if not columns:
        raise UserInputError(f"fer2013: no images found in {root}/train/<emotion>/ (expected layout: {FOLDER_LAYOUT})")
    splits = {}
    for split, cols in columns.items():
        splits[split] = make_split(cols, None, f"fer2013 {split}", source="fer2013")
    return RawSource(name="fer2013", splits=finish(splits))
