"""FERPlus: ten crowd votes per FER2013 face (`fer2013new.csv`), joined row by row to `fer2013.csv`.

The label comes from the votes by the official majority rule (single votes are outliers and dropped; the top class
needs more than half of the remaining votes) or, as an option, by plurality (a unique top class after dropping
single votes). Faces whose winner is contempt, unknown or not-a-face, or that have no winner, are left out for the
7-class setting (and counted). Both standards are kept side by side: `fer2013_label` and `ferplus_label`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from datasets import List, Value

from ...errors import UserInputError
from ..schema import Options, RawSource, ReadContext, finish, label_ids, make_split, require_dir, require_file
from .fer2013 import FER2013_LABELS, dedup_train, find_csv, iter_fer2013_csv

#: FERPlus vote columns, in file order.
FERPLUS_VOTE_ORDER: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
#: FERPlus vote positions onto the canonical names (contempt, unknown and NF have no canonical class).
FERPLUS_LABELS: dict[int, str] = {
    0: "neutral",
    1: "happiness",
    2: "surprise",
    3: "sadness",
    4: "anger",
    5: "disgust",
    6: "fear",
}
NEW_CSV_COLUMNS = ("Usage", "Image name", *FERPLUS_VOTE_ORDER)
LAYOUT = (
    "FERPlus: FOLDER/fer2013.csv (emotion,pixels,Usage) and FOLDER/fer2013new.csv ("
    + ",".join(NEW_CSV_COLUMNS)
    + "), one row per fer2013.csv row"
)
RULES = ("majority", "plurality")


def ferplus_winner(votes: Sequence[int], rule: str = "majority") -> tuple[int, str | None]:
    """The winning vote position and None, or (-1, why there is none) under `rule`."""
    kept = [v if v > 1 else 0 for v in votes]  # a single vote is an outlier (official FERPlus rule)
    total = sum(kept)
    if total == 0:
        return -1, "no votes" if sum(votes) == 0 else "no majority"
    top = max(kept)
    winners = [i for i, v in enumerate(kept) if v == top]
    if rule == "majority" and top <= total / 2:
        return -1, "no majority"
    if rule == "plurality" and len(winners) > 1:
        return -1, "tie"
    return winners[0], None


def ferplus_label(votes: Sequence[int] | None, rule: str = "majority") -> tuple[int, str | None]:
    """The canonical label id of a face from its votes, or (-1, reason) when it has none in the 7 classes."""
    if votes is None or len(votes) == 0:
        return -1, "no votes"
    position, reason = ferplus_winner(votes, rule)
    if position < 0:
        return -1, reason
    if position not in FERPLUS_LABELS:
        return -1, FERPLUS_VOTE_ORDER[position]
    return label_ids(FERPLUS_LABELS)[position], None


def _read_votes(path: Path) -> list[tuple[int, str, str, list[int] | None]]:
    """Rows of fer2013new.csv as (line, usage, image name, votes or None when the face has no votes)."""
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        if tuple(header[: len(NEW_CSV_COLUMNS)]) != NEW_CSV_COLUMNS:
            raise UserInputError(f"{path}:1: header {header} is not {','.join(NEW_CSV_COLUMNS)}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if len(row) < len(NEW_CSV_COLUMNS):
                raise UserInputError(f"{where}: expected {len(NEW_CSV_COLUMNS)} fields, got {len(row)}")
            try:
                votes = [int(float(v)) for v in row[2 : len(NEW_CSV_COLUMNS)]]
            except ValueError:
                raise UserInputError(f"{where}: votes {row[2:]} are not integers") from None
            if min(votes) < 0:
                raise UserInputError(f"{where}: negative vote count in {votes}")
            name = row[1].strip()
            rows.append((reader.line_num, row[0].strip(), name, votes if name or sum(votes) else None))
    return rows


def read_ferplus(path: Path, options: Options, ctx: ReadContext) -> RawSource:
    """Read fer2013.csv + fer2013new.csv. Options: `label=ferplus|fer2013`, `rule=majority|plurality`, `dedup`."""
    label_choice = options.choice("label", ("ferplus", "fer2013"), "ferplus")
    rule = options.choice("rule", RULES, "majority")
    dedup = options.flag("dedup", True)
    options.done()
    require_dir(path, "ferplus", LAYOUT)
    old_csv = find_csv(path) or require_file(path / "fer2013.csv", "ferplus", LAYOUT)
    new_csv = find_csv(path, "fer2013new.csv") or require_file(path / "fer2013new.csv", "ferplus", LAYOUT)
    votes = _read_votes(new_csv)
    fer_ids = label_ids(FER2013_LABELS)
    rows, plus, n_rows = [], [], 0
    for row in iter_fer2013_csv(old_csv, ctx):
        n_rows += 1
        if row.index >= len(votes):
            raise UserInputError(f"{new_csv}: has {len(votes)} rows but {old_csv}:{row.line} is row {row.index + 1}")
        line, usage, name, vote = votes[row.index]
        if usage and usage not in ("Training", "PublicTest", "PrivateTest"):
            raise UserInputError(f"{new_csv}:{line}: unknown Usage {usage!r}")
        expected = {"train": "Training", "validation": "PublicTest", "test": "PrivateTest"}[row.split]
        if usage and usage != expected:
            raise UserInputError(f"{new_csv}:{line}: Usage {usage!r} but {old_csv}:{row.line} says {expected!r}")
        if row.png is not None:
            rows.append(row)
            plus.append((name, vote))
    if len(votes) != n_rows:
        raise UserInputError(f"{new_csv}: has {len(votes)} rows but {old_csv} has {n_rows}; they must match row by row")
    keep = dedup_train([r.split for r in rows], [r.sha1 for r in rows]) if dedup else [True] * len(rows)
    columns: dict[str, dict[str, list]] = {}
    dropped: dict[str, dict[str, int]] = {}
    for row, (name, vote), kept in zip(rows, plus, keep, strict=True):
        counts = dropped.setdefault(row.split, {})
        if not kept:
            counts["duplicate of an evaluation image"] = counts.get("duplicate of an evaluation image", 0) + 1
            continue
        plus_label, reason = ferplus_label(vote, rule)
        old_label = fer_ids[row.code]
        label, reference = (plus_label, old_label) if label_choice == "ferplus" else (old_label, plus_label)
        if label < 0:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        cols = columns.setdefault(row.split, {k: [] for k in _COLUMNS})
        cols["image"].append({"bytes": row.png, "path": None})
        cols["label"].append(label)
        cols["id"].append(f"fer2013_{row.index:05d}")
        cols["reference_label"].append(reference)
        cols["fer2013_label"].append(old_label)
        cols["ferplus_label"].append(plus_label)
        cols["ferplus_votes"].append(vote or [])
        cols["ferplus_name"].append(name)
        cols["pixel_sha1"].append(row.sha1)
    splits = {}
    for split, cols in columns.items():
        cols["source"] = ["ferplus" if label_choice == "ferplus" else "fer2013"] * len(cols["id"])
        splits[split] = make_split(cols, _EXTRA, f"ferplus {split}")
    return RawSource(
        name="ferplus", splits=finish(splits), meta_files=[old_csv, new_csv], dropped=dropped, bad=list(ctx.bad)
    )


_EXTRA = {
    "fer2013_label": Value("int64"),
    "ferplus_label": Value("int64"),
    "ferplus_votes": List(Value("int64")),
    "ferplus_name": Value("string"),
    "pixel_sha1": Value("string"),
}
_COLUMNS = ("image", "label", "id", "reference_label", *_EXTRA)
