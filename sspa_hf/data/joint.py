"""The joint training set: the target's training split plus a seeded fraction of the auxiliary training split.

The auxiliary rows are the first `round(fraction * N)` of a seeded permutation (per class when stratified), so for
one seed a smaller fraction is a subset of a larger one. No image is copied: new columns are added to the
(memory-mapped) tables and the sample is an index mapping.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, Value, concatenate_datasets

from ..errors import UserInputError
from ..labels import EXPRESSIONS, NUM_CLASSES, class_label_feature
from .columns import read_column

JOINT_COLUMNS: tuple[str, ...] = ("image", "label", "is_target", "source", "sample_index", "id", "reference_label")
_NEEDED = ("image", "label", "source", "id", "reference_label")


def sample_fraction(labels: np.ndarray, fraction: float, seed: int = 0, stratified: bool = False) -> np.ndarray:
    """Sorted row indices of a `fraction` of rows: uniform, or per class with largest-remainder quotas."""
    labels = np.asarray(labels, dtype=np.int64)
    total = len(labels)
    n = min(total, max(1, round(fraction * total))) if total else 0
    if not stratified:
        return np.sort(np.random.default_rng(seed).permutation(total)[:n])
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    exact = fraction * counts
    quota = np.floor(exact).astype(np.int64)
    remainder = n - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -(exact - quota)))  # largest fractional part first, then class id
    for c in order[:remainder]:
        quota[c] += 1
    chosen = []
    for c in np.flatnonzero(quota):
        rows = np.flatnonzero(labels == c)
        chosen.append(rows[np.random.default_rng([seed, int(c)]).permutation(len(rows))[: quota[c]]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _prepared(split: Dataset, role: str, is_target: bool, first_index: int, rows: np.ndarray | None) -> Dataset:
    """The split's shared columns plus `is_target` and `sample_index` (numbered from `first_index` in `rows`)."""
    missing = [c for c in _NEEDED if c not in split.column_names]
    if missing:
        raise UserInputError(
            f"build_joint: the {role} split lacks column(s) {', '.join(missing)} (load it with load_source)"
        )
    label = split.features["label"]
    if not (isinstance(label, ClassLabel) and list(label.names) == list(EXPRESSIONS)):
        raise UserInputError(f"build_joint: the {role} split's label is {label}, not the canonical ClassLabel")
    split = split.select_columns(list(_NEEDED))
    if split.features["reference_label"] != Value("int64"):
        split = split.cast_column("reference_label", Value("int64"))
    n = len(split)
    sample_index = np.full(n, -1, dtype=np.int64)
    chosen = np.arange(n) if rows is None else rows
    sample_index[chosen] = first_index + np.arange(len(chosen))
    split = split.add_column("is_target", np.full(n, is_target), feature=Value("bool"))
    split = split.add_column("sample_index", sample_index, feature=Value("int64"))
    return split if rows is None else split.select(rows)


def build_joint(
    target: Dataset,
    auxiliary: Dataset | None,
    fraction: float = 1.0,
    seed: int = 0,
    stratified: bool = False,
) -> Dataset:
    """Target rows (all, first) then a seeded `fraction` of auxiliary rows, with `sample_index` 0..N-1."""
    if not 0.0 < float(fraction) <= 1.0:
        raise UserInputError(f"build_joint: fraction {fraction} is outside (0, 1]")
    parts = [_prepared(target, "target", True, 0, None)]
    if auxiliary is not None and len(auxiliary):
        if "label" not in auxiliary.column_names:
            raise UserInputError("build_joint: the auxiliary split has no label column")
        rows = sample_fraction(np.asarray(read_column(auxiliary, "label")), fraction, seed, stratified)
        parts.append(_prepared(auxiliary, "auxiliary", False, len(target), rows))
    features = parts[0].features.copy()
    features["label"] = class_label_feature()
    joint = concatenate_datasets([p.cast(features) if p.features != features else p for p in parts])
    return joint.select_columns(list(JOINT_COLUMNS))
