"""A FER2013 + FERPlus parquet folder (one row per face, both annotations): one set of faces, two standards.

Each row carries its FER2013 label and its FERPlus votes and labels in FER2013 code order; we map them to the
canonical order. `label=ferplus|fer2013|plurality` picks the standard; the other one becomes `reference_label`.
Rows whose chosen label is -1 are left out (and counted), and with `dedup=1` (default) training rows whose pixels
occur in an evaluation split are left out too, as the folder's README asks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import Dataset, DatasetInfo, List, Value
from datasets.table import InMemoryTable

from ...errors import UserInputError
from ..schema import (
    Options,
    RawSource,
    ReadContext,
    base_features,
    finish,
    label_ids,
    require_dir,
    warn_empty_classes,
)
from .fer2013 import FER2013_LABELS
from .ferplus import FERPLUS_VOTE_ORDER

SPLIT_FILES = ("train", "validation", "test")
REQUIRED = ("id", "image", "fer2013_label", "ferplus_label", "ferplus_plurality", "ferplus_votes", "pixel_sha1")
LAYOUT = "fer2013_ferplus: FOLDER/{train,validation[,test]}.parquet with columns " + ", ".join(REQUIRED)
_LABEL_COLUMN = {"ferplus": "ferplus_label", "fer2013": "fer2013_label", "plurality": "ferplus_plurality"}
_EXTRA = {
    "fer2013_label": Value("int64"),
    "ferplus_label": Value("int64"),
    "ferplus_plurality": Value("int64"),
    "ferplus_votes": List(Value("int64")),
    "pixel_sha1": Value("string"),
    "usage": Value("string"),
    "fer2013_label_ambiguous": Value("bool"),
}
_OPTIONAL = ("usage", "fer2013_label_ambiguous", "ferplus_label_fp")


def _to_canonical(codes: np.ndarray) -> np.ndarray:
    """FER2013 codes (-1 = none) onto canonical ids (-1 kept)."""
    lookup = np.full(8, -1, dtype=np.int64)
    for code, canonical in label_ids(FER2013_LABELS).items():
        lookup[code] = canonical
    codes = codes.astype(np.int64)
    if codes.size and (codes.min() < -1 or codes.max() > 6):
        raise UserInputError(f"label codes {sorted(set(codes.tolist()))[:10]} outside -1..6")
    return lookup[codes]


def _split_file(folder: Path, split: str) -> Path | None:
    matches = sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}-*.parquet"))
    return matches[0] if matches else None


def _drop_reasons(table: pa.Table, label_column: str, mask: np.ndarray) -> dict[str, int]:
    """Why the rows in `mask` have no label: no votes, the FERPlus winner's name, or no (unique) winner."""
    reasons: dict[str, int] = {}
    has_votes = pc.is_valid(table.column("ferplus_votes")).to_numpy(zero_copy_only=False)
    fp = (
        table.column("ferplus_label_fp").fill_null(-1).to_numpy(zero_copy_only=False)
        if "ferplus_label_fp" in table.column_names and label_column == "ferplus_label"
        else None
    )
    for i in np.flatnonzero(mask):
        if not has_votes[i]:
            reason = "no votes"
        elif fp is not None:
            reason = FERPLUS_VOTE_ORDER[int(fp[i])] if fp[i] >= 7 else "no majority"
        elif label_column == "ferplus_plurality":
            reason = "no plurality winner in the 7 classes"
        else:
            reason = "no label"
        reasons[reason] = reasons.get(reason, 0) + 1
    return reasons


def read_fer2013_ferplus(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read the parquet folder. Options: `label=ferplus|fer2013|plurality` (default ferplus), `dedup` (default 1)."""
    choice = options.choice("label", tuple(_LABEL_COLUMN), "ferplus")
    dedup = options.flag("dedup", True)
    options.done()
    require_dir(path, "fer2013_ferplus", LAYOUT)
    files = {split: _split_file(path, split) for split in SPLIT_FILES}
    files = {split: file for split, file in files.items() if file is not None}
    if "train" not in files:
        raise UserInputError(f"fer2013_ferplus: {path / 'train.parquet'} not found (expected layout: {LAYOUT})")
    tables = {}
    for split, file in files.items():
        names = pq.read_schema(file).names
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise UserInputError(f"{file}: missing column(s) {', '.join(missing)} (expected layout: {LAYOUT})")
        wanted = [c for c in names if c in REQUIRED or c in _OPTIONAL]
        tables[split] = pq.read_table(file, columns=wanted)
    evaluation = set()
    for split, table in tables.items():
        if split != "train":
            evaluation.update(table.column("pixel_sha1").to_pylist())
    label_column = _LABEL_COLUMN[choice]
    reference_column = "fer2013_label" if choice != "fer2013" else "ferplus_label"
    features = base_features(_EXTRA)
    splits, dropped = {}, {}
    for split, table in tables.items():
        counts: dict[str, int] = {}
        if dedup and split == "train" and evaluation:
            duplicate = pc.is_in(table.column("pixel_sha1"), value_set=pa.array(sorted(evaluation))).to_numpy(
                zero_copy_only=False
            )
            if duplicate.any():
                counts["duplicate of an evaluation image"] = int(duplicate.sum())
                table = table.filter(pa.array(~duplicate))
        try:
            canon = {c: _to_canonical(_ints(table, c)) for c in ("fer2013_label", "ferplus_label", "ferplus_plurality")}
        except UserInputError as err:
            raise UserInputError(f"{files[split]}: {err}") from None
        no_label = canon[label_column] < 0
        if no_label.any():
            counts.update(_drop_reasons(table, label_column, no_label))
        keep = pa.array(~no_label)
        n = int((~no_label).sum())
        columns = {
            "image": table.column("image").filter(keep),
            "label": pa.array(canon[label_column][~no_label]),
            "source": pa.array(["ferplus" if choice != "fer2013" else "fer2013"] * n, pa.string()),
            "id": table.column("id").filter(keep),
            "reference_label": pa.array(canon[reference_column][~no_label]),
            "fer2013_label": pa.array(canon["fer2013_label"][~no_label]),
            "ferplus_label": pa.array(canon["ferplus_label"][~no_label]),
            "ferplus_plurality": pa.array(canon["ferplus_plurality"][~no_label]),
            "ferplus_votes": table.column("ferplus_votes").filter(keep),
            "pixel_sha1": table.column("pixel_sha1").filter(keep),
            "usage": _optional(table, "usage", pa.string(), keep, n),
            "fer2013_label_ambiguous": _optional(table, "fer2013_label_ambiguous", pa.bool_(), keep, n),
        }
        arrow = pa.table(columns).cast(features.arrow_schema)
        ds = Dataset(InMemoryTable(arrow), info=DatasetInfo(features=features))
        warn_empty_classes(ds, f"fer2013_ferplus {split}")
        splits[split], dropped[split] = ds, counts
    return RawSource(name="fer2013_ferplus", splits=finish(splits), meta_files=list(files.values()), dropped=dropped)


def _ints(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).fill_null(-1).to_numpy(zero_copy_only=False)


def _optional(table: pa.Table, column: str, kind: pa.DataType, keep: pa.Array, n: int) -> pa.Array:
    if column in table.column_names:
        return table.column(column).filter(keep)
    return pa.nulls(n, kind)
