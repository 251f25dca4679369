"""sspa-predict's results, written as they come: one row per image (or per face), flushed after every batch, so
that a run stopped late keeps every row done; a file is complete only once renamed from its `.partial` name."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .photos import FaceRow

FACE_COLUMNS = ["path", "frame", "face", "x", "y", "w", "h"]


def partial_path(output: Path) -> Path:
    """Where rows go while a run writes `output`: FILE.partial.csv for FILE.csv (renamed at the end)."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def csv_header(top_k: int, faces: bool) -> list[str]:
    """path,label_1,score_1,...,error (with --detect_faces path,frame,face,x,y,w,h,label_1,...,error)."""
    labels = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")]
    return [*(FACE_COLUMNS if faces else ["path"]), *labels, "error"]


def csv_row(row: FaceRow, top_k: int, faces: bool) -> list[Any]:
    """One CSV row; missing predictions (no face, an error) are empty cells, so `error` stays the last column."""
    scores = [value for p in row.predictions for value in (p["label"], repr(p["score"]))]
    scores += [""] * (2 * top_k - len(scores))
    if not faces:
        return [row.image, *scores, row.error or ""]
    box = list(row.box) if row.box else ["", "", "", ""]
    blank = ["" if value is None else value for value in (row.frame, row.face)]
    return [row.image, *blank, *box, *scores, row.error or ""]


def json_record(row: FaceRow, faces: bool) -> dict[str, Any]:
    """{path, predictions, error} (with --detect_faces {path, frame, face, box, predictions, error})."""
    if not faces:
        return {"path": row.image, "predictions": row.predictions, "error": row.error}
    box = list(row.box) if row.box else None
    return {
        "path": row.image,
        "frame": row.frame,
        "face": row.face,
        "box": box,
        "predictions": row.predictions,
        "error": row.error,
    }


class RowWriter:
    """Rows to stdout (CSV) or to `output` (.csv or .json), written and flushed batch by batch into
    FILE.partial.EXT, renamed to FILE.EXT by `finish`; `stop` closes a stopped run's file as it stands."""

    def __init__(self, output: Path | None, top_k: int, faces: bool) -> None:
        self.output, self.top_k, self.faces = output, top_k, faces
        self.as_json = output is not None and output.suffix.lower() == ".json"
        self.rows = 0
        self.partial = partial_path(output) if output is not None else None
        self._handle: TextIO
        if self.partial is not None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.partial.open("w", encoding="utf-8", newline="")
        else:
            self._handle = sys.stdout
        self._csv = csv.writer(self._handle, lineterminator="\n")
        if self.as_json:
            self._handle.write("[")
        else:
            self._csv.writerow(csv_header(top_k, faces))

    def write(self, rows: Sequence[FaceRow]) -> None:
        """Append `rows` and flush them to the file."""
        for row in rows:
            if self.as_json:
                self._handle.write(("\n" if self.rows == 0 else ",\n") + json.dumps(json_record(row, self.faces)))
            else:
                self._csv.writerow(csv_row(row, self.top_k, self.faces))
            self.rows += 1
        self._handle.flush()

    def _close(self) -> None:
        if self.as_json:
            self._handle.write("\n]\n")
        self._handle.flush()
        if self.partial is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()

    def finish(self) -> None:
        """Every row written: close the file and give it its name (replacing an older file of that name)."""
        self._close()
        if self.partial is not None and self.output is not None:
            os.replace(self.partial, self.output)

    def stop(self) -> str | None:
        """The run stopped early: close what was written (a JSON list is closed, so the file parses) and say where
        it is; never raises (the error that stopped the run is the one to report)."""
        with contextlib.suppress(OSError, ValueError):
            self._close()
        if self.partial is None:
            return None
        return f"the {self.rows} rows done so far are in {self.partial} (incomplete; the run did not finish)"
