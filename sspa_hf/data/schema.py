"""The types every layer of the data package shares: a parsed spec and its options, the columns of a loaded split,
what a reader returns, and the helpers readers use to build and check them."""

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

from ..errors import UserInputError
from ..labels import EXPRESSIONS, LABEL2ID, class_label_feature
from .images import IMAGE_EXTENSIONS  # file extensions read as images in folder layouts (lower case)

logger = logging.getLogger("sspa_hf.data")

#: Columns every split of every loader has, in this order.
BASE_COLUMNS: tuple[str, ...] = ("image", "label", "source", "id", "reference_label")
#: Per-row geometry a reader may attach for `sspa-prepare`; removed from the prepared dataset.
GEOMETRY_COLUMNS: tuple[str, ...] = ("face_box", "landmarks")
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

#: Spellings of the canonical classes met in folder and label names (lower case).
NAME_SYNONYMS: dict[str, str] = {
    **{name: name for name in EXPRESSIONS},
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "surprised": "surprise",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec; `format` is None for a bare path to a prepared / `save_to_disk` folder."""

    text: str
    format: str | None
    path: str
    options: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """The spec with its options sorted, so equal specs compare (and hash) equal."""
        if self.format is None:
            return self.path
        query = "&".join(f"{key}={value}" for key, value in sorted(self.options.items()))
        return f"{self.format}:{self.path}" + (f"?{query}" if query else "")

    def with_options(self, **options: str) -> SourceSpec:
        """A copy with some options added or replaced."""
        merged = {**self.options, **options}
        return SourceSpec(text=self.text, format=self.format, path=self.path, options=merged)


class Options:
    """Typed access to a spec's options; `done()` rejects any option the reader did not ask for."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._asked: set[str] = set()

    def _raw(self, key: str) -> str | None:
        self._asked.add(key)
        return self.spec.options.get(key)

    def _bad(self, key: str, value: str, expected: str) -> UserInputError:
        return UserInputError(
            f"dataset spec {self.spec.text!r}: option {key}={value!r} is invalid; expected {expected}"
        )

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """One of `choices` (case-insensitive)."""
        value = self._raw(key)
        if value is None:
            return default
        if value.lower() not in choices:
            raise self._bad(key, value, "one of " + ", ".join(choices))
        return value.lower()

    def flag(self, key: str, default: bool) -> bool:
        """A boolean written 1/0, true/false, yes/no or on/off."""
        value = self._raw(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self._bad(key, value, "1 or 0")

    def integer(self, key: str, default: int | None, minimum: int | None = None) -> int | None:
        """An integer, at least `minimum` when given."""
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self._bad(key, value, "an integer") from None
        if minimum is not None and number < minimum:
            raise self._bad(key, value, f"an integer >= {minimum}")
        return number

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string as given."""
        value = self._raw(key)
        return default if value is None else value

    def done(self) -> None:
        """Raise if the spec holds an option this format does not read."""
        unknown = sorted(set(self.spec.options) - self._asked)
        if unknown:
            accepted = ", ".join(sorted(self._asked)) or "none"
            raise UserInputError(
                f"dataset spec {self.spec.text!r}: unknown option {unknown[0]!r} for format {self.spec.format} "
                f"(accepted: {accepted})"
            )


def parse_label_map(text: str, where: str) -> dict[str, str | None]:
    """Parse `native1:ours1,native2:ours2` (ours may be `drop`); names are checked against the canonical ones."""
    mapping: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        native, colon, ours = item.rpartition(":")
        if not colon or not native:
            raise UserInputError(f"{where}: label_map entry {item!r} is not native:ours")
        ours = ours.strip().lower()
        if ours in ("drop", "-"):
            mapping[native.strip()] = None
        elif ours in EXPRESSIONS:
            mapping[native.strip()] = ours
        else:
            raise UserInputError(
                f"{where}: label_map maps {native!r} to {ours!r}, which is not one of {', '.join(EXPRESSIONS)} or drop"
            )
    if not mapping:
        raise UserInputError(f"{where}: label_map is empty")
    return mapping


def name_to_id(name: str, label_map: dict[str, str | None] | None) -> int | None:
    """Canonical id of a native class name, None to drop it; raises KeyError for an unknown name.

    `label_map` comes first; a name it does not list is still known by its common spellings (NAME_SYNONYMS), so a
    map need only name what those do not cover."""
    if label_map is not None:
        lowered = {key.lower(): value for key, value in label_map.items()}
        if name in label_map or name.lower() in lowered:
            target = label_map[name] if name in label_map else lowered[name.lower()]
            return None if target is None else LABEL2ID[target]
    return LABEL2ID[NAME_SYNONYMS[name.lower()]]


def unknown_name_hint(label_map: dict[str, str | None] | None) -> str:
    """What a name unknown to `name_to_id` is not, and how to map it: the end of a one-line error."""
    spellings = ", ".join(name for name in NAME_SYNONYMS if name not in EXPRESSIONS)
    where = f"neither in label_map ({', '.join(label_map)}) nor" if label_map else "not"
    return (
        f"{where} a class name ({', '.join(EXPRESSIONS)}) or a common spelling of one ({spellings}); "
        "map it with label_map=name:class or name:drop"
    )


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
    detector: str = "haar"  # which face detector finds the face (`sspa_hf.data.faces.DETECTORS`)

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
