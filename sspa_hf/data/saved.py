"""`save_to_disk` folders: recognise and load them, read a prepared folder's manifest, and bring any
`datasets` DatasetDict onto the shared columns (its label column mapped onto the canonical classes by name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Image, Value

from ..errors import UserInputError
from ..labels import EXPRESSIONS, class_label_feature
from .schema import BASE_COLUMNS, SPLIT_ALIASES, finish, name_to_id, unknown_name_hint, warn_empty_classes

SAVED_MARKERS = ("dataset_dict.json", "state.json")
#: The manifest `sspa-prepare` writes into a prepared folder (source fingerprint, options, counts, aliases).
MANIFEST = "sspa_prepare.json"


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a folder written by `save_to_disk` (a DatasetDict or a single Dataset)."""
    return any((path / marker).is_file() for marker in SAVED_MARKERS)


def load_saved(path: Path) -> DatasetDict:
    """`load_from_disk`, a single Dataset becoming the `train` split."""
    loaded = datasets.load_from_disk(str(path))
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a prepared folder, or None."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def load_prepared(folder: Path) -> DatasetDict:
    """Load a prepared folder (aliased splits restored), bringing foreign `save_to_disk` data onto our columns."""
    splits = load_saved(folder)
    manifest = read_manifest(folder) or {}
    for alias, target in manifest.get("aliases", {}).items():
        if target in splits:
            splits[alias] = splits[target]
    return normalise(splits, source_name=folder.name, where=str(folder))


def normalise(
    loaded: DatasetDict,
    image_column: str = "image",
    label_column: str = "label",
    label_map: dict[str, str | None] | None = None,
    source_name: str = "hf",
    where: str = "dataset",
) -> DatasetDict:
    """Every split with the shared columns first (canonical labels); unmapped rows dropped only via label_map."""
    splits = {}
    for split_name, split in loaded.items():
        name = SPLIT_ALIASES.get(str(split_name).lower(), str(split_name))
        splits[name] = _normalise_split(split, image_column, label_column, label_map, source_name, f"{where} {name}")
    return finish(splits)


def _is_canonical(feature) -> bool:
    return isinstance(feature, ClassLabel) and list(feature.names) == list(EXPRESSIONS)


def _normalise_split(
    split: Dataset,
    image_column: str,
    label_column: str,
    label_map: dict[str, str | None] | None,
    source_name: str,
    where: str,
) -> Dataset:
    features = split.features
    for column in (image_column, label_column):
        if column not in features:
            raise UserInputError(
                f"{where}: no column {column!r} (columns: {', '.join(features)}); name it with "
                f"image_column= / label_column="
            )
    if image_column != "image":
        split = split.remove_columns([c for c in ("image",) if c in features]).rename_column(image_column, "image")
    image_feature = split.features["image"]
    if isinstance(image_feature, Value) and image_feature.dtype in ("string", "large_string"):
        split = split.cast_column("image", Image())
    elif not isinstance(image_feature, Image):
        raise UserInputError(f"{where}: column {image_column!r} is {image_feature}, not an image")
    n = len(split)
    if "source" not in split.features:
        split = split.add_column("source", [source_name] * n, feature=Value("string"))
    if "id" not in split.features:
        split = split.add_column("id", [str(i) for i in range(n)], feature=Value("string"))
    elif split.features["id"] != Value("string"):
        split = split.cast_column("id", Value("string"))
    if "reference_label" not in split.features:
        split = split.add_column("reference_label", np.full(n, -1, dtype=np.int64), feature=Value("int64"))
    elif split.features["reference_label"] != Value("int64"):
        split = split.cast_column("reference_label", Value("int64"))
    # labels last, so ids number the rows as they were before any row is dropped
    label_feature = split.features[label_column]
    if not (label_map is None and _is_canonical(label_feature)):
        split = _map_labels(split, label_column, label_map, where)
    elif label_column != "label":
        split = split.remove_columns([c for c in ("label",) if c in split.features]).rename_column(
            label_column, "label"
        )
    order = [*BASE_COLUMNS, *(c for c in split.column_names if c not in BASE_COLUMNS)]
    if split.column_names != order:
        split = split.select_columns(order)
    return split


def _map_labels(split: Dataset, column: str, label_map: dict[str, str | None] | None, where: str) -> Dataset:
    """Replace `column` by a canonical `label`; rows whose name maps to `drop` are left out."""
    feature = split.features[column]
    values = split[column]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
        native = [names[v] if v is not None and 0 <= v < len(names) else v for v in values]
    elif label_map is None and isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        raise UserInputError(
            f"{where}: label column {column!r} holds integers without names; give label_map=0:anger,1:disgust,..."
        )
    else:
        native = list(values)
    lookup: dict[object, int | None] = {}
    labels = np.empty(len(native), dtype=np.int64)
    keep = np.ones(len(native), dtype=bool)
    for row, value in enumerate(native):
        if value not in lookup:
            try:
                lookup[value] = name_to_id(str(value), label_map)
            except KeyError:
                raise UserInputError(
                    f"{where}: row {row}: unknown label {value!r} in column {column!r}: {unknown_name_hint(label_map)}"
                ) from None
        target = lookup[value]
        if target is None:
            keep[row] = False
        else:
            labels[row] = target
    labels[~keep] = 0
    split = split.remove_columns([c for c in {column, "label"} if c in split.features])
    split = split.add_column("label", labels, feature=class_label_feature())
    if not keep.all():
        split = split.select(np.flatnonzero(keep))
    warn_empty_classes(split, where)
    return split
