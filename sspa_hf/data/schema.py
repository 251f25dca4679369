"""The columns every loaded split shares, and the helpers readers use to build and check them."""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from datasets import Dataset, Features, Image, Value

from sspa_hf.errors import UserInputError
from sspa_hf.labels import EXPRESSIONS, LABEL2ID, class_label_feature

logger = logging.getLogger("sspa_hf.data")

#: Columns every split of every loader has, in this order.
BASE_COLUMNS: tuple[str, ...] = ("image", "label", "source", "id", "reference_label")
#: Per-row geometry a reader may attach for `sspa-prepare`; removed from the prepared dataset.
GEOMETRY_COLUMNS: tuple[str, ...] = ("face_box", "landmarks")
#: File extensions read as images in folder layouts (lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Split names normalised to ours.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "test": "test",
    "testing": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
}


def base_features(extra: Mapping[str, Any] | None = None) -> Features:
    """Features of a loaded split: the shared columns followed by a reader's extra columns."""
    features = {
        "image": Image(),
        "label": class_label_feature(),
        "source": Value("string"),
        "id": Value("string"),
        "reference_label": Value("int64"),
    }
    features.update(extra or {})
    return Features(features)


def label_ids(table: Mapping[Any, str]) -> dict[Any, int]:
    """Turn a dataset's `native label -> canonical name` table into `native label -> canonical id`."""
    return {native: LABEL2ID[name] for native, name in table.items()}


def class_counts(labels: Iterable[int]) -> dict[str, int]:
    """Samples per canonical class, in canonical order (zeros included)."""
    counts = Counter(int(label) for label in labels)
    return {name: counts.get(i, 0) for i, name in enumerate(EXPRESSIONS)}


def format_counts(counts: Mapping[Any, int]) -> str:
    """`name=count` pairs on one line, for messages."""
    return ", ".join(f"{name}={count}" for name, count in counts.items())


def warn_empty_classes(split: Dataset, where: str) -> None:
    """Warn (with the per-class counts) when a split has no samples of some class."""
    if len(split) == 0:
        warnings.warn(f"{where}: the split is empty", UserWarning, stacklevel=3)
        return
    counts = class_counts(split["label"])
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        warnings.warn(
            f"{where}: no samples of class {', '.join(empty)}; class counts: {format_counts(counts)}",
            UserWarning,
            stacklevel=3,
        )


def make_split(
    columns: dict[str, list], extra_features: Mapping[str, Any] | None, where: str, source: str | None = None
) -> Dataset:
    """Build one split from column lists (base columns first), cast to the shared features, warn on empty classes.

    `source` fills the source column; a missing `reference_label` column means the source knows no other standard.
    """
    n = len(columns["id"])
    columns = {"reference_label": [-1] * n, **columns}
    if source is not None:
        columns["source"] = [source] * n
    features = base_features(extra_features)
    missing = [name for name in features if name not in columns]
    if missing:
        raise AssertionError(f"reader bug: columns {missing} missing for {where}")
    ordered = {name: columns[name] for name in features}
    split = Dataset.from_dict(ordered, features=features)
    warn_empty_classes(split, where)
    return split


def finish(splits: Mapping[str, Dataset]) -> datasets.DatasetDict:
    """A DatasetDict with splits in the order train, validation, test, then any other."""
    order = {"train": 0, "validation": 1, "test": 2}
    return datasets.DatasetDict({name: splits[name] for name in sorted(splits, key=lambda s: (order.get(s, 3), s))})


@dataclass
class ReadContext:
    """What a reader does with a listed image it cannot use: raise (default) or record it and go on."""

    skip_bad_images: bool = False
    bad: list[tuple[str, str]] = field(default_factory=list)

    def bad_image(self, path: str | Path, reason: str, message: str) -> None:
        """Raise a UserInputError with `message`, or (skip mode) remember `path` and `reason` for the report."""
        if not self.skip_bad_images:
            raise UserInputError(message)
        self.bad.append((str(path), reason))
        logger.warning("skipping %s: %s", path, reason)


def require_dir(path: Path, what: str, layout: str) -> Path:
    """Return `path` if it is a folder, else raise an error naming it and the expected layout."""
    if not path.is_dir():
        raise UserInputError(f"{what}: folder {path} not found (expected layout: {layout})")
    return path


def require_file(path: Path, what: str, layout: str) -> Path:
    """Return `path` if it is a file, else raise an error naming it and the expected layout."""
    if not path.is_file():
        raise UserInputError(f"{what}: file {path} not found (expected layout: {layout})")
    return path


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (other files are ignored)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def list_dirs(folder: Path) -> list[Path]:
    """Sub-folders of `folder`, sorted, hidden ones left out."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class FaceWork:
    """Pixel work a source needs before training (done once by `sspa-prepare`): crop, detect, align."""

    crop_box: bool = False  # crop each image to its `face_box` column
    detect: bool = False  # find the face with a detector (CAER-S frames)
    align: bool = False  # similarity-align on the eyes (from `landmarks`, or detected eyes)
    no_face: str = "drop"  # detection found nothing: "drop" (listed in no_face.tsv) or "keep" the frame

    @property
    def needed(self) -> bool:
        return self.crop_box or self.detect or self.align


@dataclass
class RawSource:
    """What a reader returns: the splits, the files they were parsed from, and the pixel work still to do."""

    name: str
    splits: datasets.DatasetDict
    meta_files: list[Path] = field(default_factory=list)
    face_work: FaceWork = field(default_factory=FaceWork)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    bad: list[tuple[str, str]] = field(default_factory=list)
    content_key: str = ""  # identifies content the files above do not (e.g. a hub dataset's fingerprint)

    def log_dropped(self) -> None:
        """Log the rows left out per split and reason (they are never dropped silently)."""
        for split, reasons in self.dropped.items():
            if reasons:
                logger.info("%s %s: left out %s", self.name, split, format_counts(reasons))
