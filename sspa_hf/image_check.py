"""Check every image of a data set once, before training: a corrupt file must not stop a run hours in.

Each image is opened and decoded at reduced size (JPEG's DCT scaling: a truncated or corrupt file fails, at a
fraction of a full decode), in parallel with a progress bar. The verdict is cached under the dataset's
fingerprint (`$SSPA_HF_CACHE/image_checks/`), so a data set is checked only once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .data.images import BadImageError, image_name, read_bytes
from .errors import UserInputError

logger = logging.getLogger(__name__)

BAD_IMAGES_REPORT = "bad_images.tsv"
CHECK_CHUNK = 4096  # rows read and checked at a time
CHECK_VERSION = 1  # bump when what counts as a bad image changes: old verdicts are then ignored


def check_one(value: dict[str, Any] | None, name: str) -> str | None:
    """Why this `Image(decode=False)` value cannot be used (None if it can)."""
    from PIL import Image

    try:
        data = read_bytes(value, name)
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale; other formats decode fully
            image.load()
    except BadImageError as err:
        return err.reason
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return str(err) or type(err).__name__
    return None


def _verdict_path(data: Any) -> Path:
    from .data.cache import cache_root

    return cache_root() / "image_checks" / f"{data._fingerprint}-v{CHECK_VERSION}.json"


def find_bad_images(data: Any, what: str) -> list[tuple[int, str, str]]:
    """(row, name, reason) for each image of `data` that does not decode; cached by the dataset fingerprint."""
    from datasets import Image
    from tqdm.auto import tqdm

    cached = _verdict_path(data)
    if cached.is_file():
        return [tuple(row) for row in json.loads(cached.read_text())]
    plain = data.cast_column("image", Image(decode=False)) if "image" in data.column_names else data
    plain = plain.select_columns([c for c in ("image", "id") if c in plain.column_names])
    bad: list[tuple[int, str, str]] = []
    # A chunk of encoded images at a time: memory stays flat however many faces the set has.
    with (
        ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool,  # PIL decodes without the GIL
        tqdm(total=len(plain), desc=f"checking {what} images", unit="img", disable=None, leave=False) as bar,
    ):
        for first in range(0, len(plain), CHECK_CHUNK):
            chunk = plain[first : first + CHECK_CHUNK]
            images = chunk["image"]
            ids = chunk.get("id", [""] * len(images))
            names = [
                image_name(value, f"id {ids[i]}" if ids[i] else f"row {first + i}") for i, value in enumerate(images)
            ]
            reasons = pool.map(check_one, images, names)
            bad += [(first + i, names[i], reason) for i, reason in enumerate(reasons) if reason is not None]
            bar.update(len(images))
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")  # several processes may check at once
    partial.write_text(json.dumps(bad))
    partial.replace(cached)
    return bad


def write_report(bad: list[tuple[int, str, str]], path: Path) -> Path:
    """bad_images.tsv: one bad image per line, its name and the reason."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["name", "reason"])
        writer.writerows((name, reason) for _, name, reason in bad)
    return path


def without_bad_images(data: Any, what: str, skip: bool, report_dir: Path | None) -> Any:
    """`data` if every image decodes; else stop (one line, the list in bad_images.tsv), or with `skip` drop the bad
    rows and say how many. A dropped training row renumbers `sample_index` (it must stay 0..N-1)."""
    bad = find_bad_images(data, what)
    if not bad:
        return data
    name = BAD_IMAGES_REPORT if what == "training" else f"bad_images_{what}.tsv"
    report = write_report(bad, report_dir / name) if report_dir is not None else None
    listed = f"all listed in {report}" if report else "all listed by a run of sspa-train"
    first = bad[0]
    if not skip:
        raise UserInputError(
            f"{len(bad)} bad image(s) in the {what} data, e.g. {first[1]} ({first[2]}); {listed}. "
            "Fix or remove them, or pass --skip_bad_images true to leave them out"
        )
    drop = {row for row, _, _ in bad}
    kept = data.select([i for i in range(len(data)) if i not in drop])
    if "sample_index" in kept.column_names:
        kept = kept.remove_columns("sample_index").add_column("sample_index", list(range(len(kept))))
    logger.warning("left out %d bad image(s) of the %s data (%s)", len(bad), what, listed)
    return kept
