"""Check every image of a data set once, before training: a corrupt file must not stop a run hours in.

Each image is opened and decoded at reduced size (JPEG's DCT scaling: a truncated or corrupt file fails, at a
fraction of a full decode), in parallel with a progress bar. The verdict is cached under the dataset's
fingerprint and the size and modification time of every image file (`$SSPA_HF_CACHE/image_checks/`), so a data
set is checked once, and again whenever one of its files changes (fixed in place, or corrupted later).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from ..run.folder import BAD_IMAGES_REPORT
from .images import ADDRESS, UNIDENTIFIED, BadImageError, image_name, read_bytes

logger = logging.getLogger(__name__)

CHECK_CHUNK = 4096  # rows read and checked at a time
CHECK_VERSION = 2  # bump when what counts as a bad image changes: old verdicts are then ignored
_MAGIC = {b"\xff\xd8\xff\xe0": "JPEG", b"\xff\xd8\xff\xe1": "JPEG", b"\x89PNG": "PNG"}


def check_one(value: dict[str, Any] | None, name: str) -> str | None:
    """Why this `Image(decode=False)` value cannot be used, in words (None if it can)."""
    from PIL import Image, UnidentifiedImageError

    kind = "image"
    try:
        data = read_bytes(value, name)
        if not data:
            return "empty file"
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format or kind
            image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale; other formats decode fully
            image.load()
    except BadImageError as err:
        return err.reason
    except UnidentifiedImageError:
        return UNIDENTIFIED
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        message = ADDRESS.sub("", str(err)).strip() or type(err).__name__
        kind = kind if kind != "image" else _MAGIC.get(data[:4], "image")
        if "truncated" in message.lower() or "broken data stream" in message:
            return f"truncated {kind}"
        return f"corrupt {kind}: {message}"
    return None


def files_key(plain: Any) -> str:
    """A digest of (path, size, mtime) of every image stored as a path: changes whenever a file does (cheap: stat
    only). Images held as bytes inside the data set are covered by its fingerprint."""
    digest = hashlib.sha256()
    for column in plain.data.column("image").chunks:  # chunk by chunk: the encoded images are never copied
        paths = column.field("path").to_pylist()
        inline = column.field("bytes").is_valid().to_pylist()
        for path, held in zip(paths, inline, strict=True):
            if path and not held:
                try:
                    stat = os.stat(path)
                    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
                except OSError:
                    digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()[:16]


def _verdict_path(data: Any, key: str) -> Path:
    from .cache import cache_root

    return cache_root() / "image_checks" / f"{data._fingerprint}-{key}-v{CHECK_VERSION}.json"


def find_bad_images(data: Any, what: str) -> list[tuple[int, str, str]]:
    """(row, name, reason) for each image of `data` that does not decode; cached by the dataset fingerprint and
    the size and mtime of its image files."""
    from datasets import Image
    from tqdm.auto import tqdm

    plain = data.cast_column("image", Image(decode=False)) if "image" in data.column_names else data
    cached = _verdict_path(data, files_key(plain) if "image" in plain.column_names else "none")
    if cached.is_file():
        return [tuple(row) for row in json.loads(cached.read_text())]
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
