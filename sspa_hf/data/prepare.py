"""Prepare once, train many times: a raw source becomes a `save_to_disk` DatasetDict of ready faces.

Each image is decoded once, cropped / detected / aligned, resized to at most `image_size` and stored as PNG (when
the source pixels are lossless: FER2013's CSV, PNG frames) or JPEG quality 95 (when the source is JPEG already;
re-encoding lossy pixels as PNG would only make them several times bigger). An image whose pixels are not changed is
stored with its original bytes. A manifest (`sspa_prepare.json`) records a fingerprint of the source files and
options; a later run with the same fingerprint reuses the folder, and a killed run with the same fingerprint is
resumed: the face work is done in shards (`shards.py`) and only the missing ones are done again.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from ..errors import UserInputError
from ..run.folder import BAD_IMAGES_REPORT
from .cache import PREPARE_VERSION, PrepareOptions, auto_cache, content_fingerprint, tree_fingerprint, up_to_date
from .columns import read_column
from .faces import DETECTION_MARGIN, Box, align_on_eyes, crop_to_box, eye_centres, get_detector, widen
from .images import BadImageError, choose_format, decode, encode, image_name, read_bytes, storable
from .saved import MANIFEST, load_prepared, read_manifest
from .schema import GEOMETRY_COLUMNS, FaceWork, RawSource, SourceSpec, class_counts
from .shards import WORK, close_partial, open_partial, run_shards, unmark

logger = logging.getLogger("sspa_hf.data")

NO_FACE_REPORT = "no_face.tsv"
ALIGNED_SIZE = 224  # face size of aligned output when image_size is 0 (keep)


@dataclass
class PrepareResult:
    """Where the prepared dataset is, whether an existing one was reused, and its manifest."""

    output_dir: Path
    reused: bool
    manifest: dict[str, Any]


def prepare_cached(spec: SourceSpec, source: RawSource) -> DatasetDict:
    """Prepare a source that needs face work into the cache once, and load it from there."""
    output_dir, options = auto_cache(spec)
    result = prepare(source, spec, output_dir, options)
    if not result.reused:
        logger.warning(
            "prepared %s into %s (sspa-prepare does this with your choice of folder and size)", spec.text, output_dir
        )
    return load_prepared(output_dir)


def prepare(
    source: RawSource, spec: SourceSpec, output_dir: Path, options: PrepareOptions, fingerprint: str | None = None
) -> PrepareResult:
    """Write (or reuse) the prepared form of an already-read source."""
    fingerprint = fingerprint or tree_fingerprint(spec, options, exclude=output_dir)
    fingerprint = fingerprint or content_fingerprint(source, spec, options)
    manifest = up_to_date(output_dir, fingerprint)
    if manifest is not None:
        return PrepareResult(output_dir, True, manifest)
    manifest = read_manifest(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and manifest is None:
        raise UserInputError(f"{output_dir} exists and is not an sspa-prepare folder; choose an empty or new folder")
    staging, lock = open_partial(output_dir, fingerprint)
    finished = False
    try:
        splits, aliases, reports = _process_splits(source, options, staging / WORK)
        DatasetDict(splits).save_to_disk(str(staging / "data"))
        shutil.rmtree(staging / WORK)
        for item in (staging / "data").iterdir():
            item.rename(staging / item.name)
        (staging / "data").rmdir()
        bad = [("-", "-", path, reason) for path, reason in source.bad] + reports["bad"]
        if options.skip_bad_images or bad:
            _write_tsv(staging / BAD_IMAGES_REPORT, ("split", "id", "file", "reason"), bad)
        if reports["no_face"]:
            _write_tsv(staging / NO_FACE_REPORT, ("split", "id", "file"), reports["no_face"])
        manifest = {
            "sspa_prepare_version": PREPARE_VERSION,
            "spec": spec.canonical(),
            "fingerprint": fingerprint,
            "options": options.key(),
            "face_work": asdict(source.face_work),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "splits": {
                name: {"rows": len(ds), "class_counts": class_counts(ds["label"])} for name, ds in splits.items()
            },
            "aliases": aliases,
            "left_out": source.dropped,
            "bad_images": len(bad),
            "no_face": len(reports["no_face"]),
            "not_aligned": reports["not_aligned"],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if output_dir.exists():
            shutil.rmtree(output_dir)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        unmark(staging, lock)
        staging.rename(output_dir)
        finished = True
    finally:
        close_partial(staging, lock, finished)
    return PrepareResult(output_dir, False, manifest)


def _write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    lines = ["\t".join(header)] + ["\t".join(str(v).replace("\t", " ") for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def _process_splits(
    source: RawSource, options: PrepareOptions, work_dir: Path
) -> tuple[dict[str, Dataset], dict[str, str], dict[str, Any]]:
    """Run the face work over every split (an aliased split, e.g. AffectNet's test, is stored once)."""
    splits: dict[str, Dataset] = {}
    aliases: dict[str, str] = {}
    seen: dict[int, str] = {}
    reports: dict[str, Any] = {"bad": [], "no_face": [], "not_aligned": 0}
    for name, split in source.splits.items():
        if id(split) in seen:
            aliases[name] = seen[id(split)]
            continue
        seen[id(split)] = name
        splits[name] = _process_split(name, split, source, options, work_dir, reports)
    return splits, aliases, reports


def _process_split(
    name: str, split: Dataset, source: RawSource, options: PrepareOptions, work_dir: Path, reports: dict[str, Any]
) -> Dataset:
    geometry = [c for c in GEOMETRY_COLUMNS if c in split.column_names]
    out_features = Features({k: v for k, v in split.features.items() if k not in geometry})
    out_features["image"] = Image()
    out_features["_status"] = Value("string")
    raw_images = split.cast_column("image", Image(decode=False))
    work = partial(_process_shard, keep=list(out_features), work=asdict(source.face_work), options=asdict(options))
    processed = run_shards(
        raw_images, work_dir / name, work, out_features, options.num_proc, f"{source.name} {name}: faces"
    )
    status = read_column(processed, "_status")

    def where(row: int) -> tuple[str, str, str]:
        item = raw_images[row]
        return name, item["id"], image_name(item["image"], item["id"])

    keep = []
    for row, note in enumerate(status):
        if note.startswith("bad:"):
            reports["bad"].append((*where(row), note[4:]))
        elif note == "no_face":
            reports["no_face"].append(where(row))
        else:
            reports["not_aligned"] += note == "not_aligned"
            keep.append(row)
    if len(keep) < len(processed):
        processed = processed.select(keep)
    counts = Counter(n.split(":")[0] for n in status if n)
    if counts:
        logger.info("%s %s: %s", source.name, name, dict(counts))
    return processed.remove_columns("_status")


def _process_shard(
    rows: dict[str, list], keep: list[str], work: dict[str, Any], options: dict[str, Any]
) -> dict[str, list]:
    """One shard's rows: the face work in batches of 32, the columns in `keep` (geometry dropped) and `_status`."""
    done: dict[str, list] = {"image": [], "_status": []}
    for start in range(0, len(rows["id"]), 32):
        batch = _process_batch({k: v[start : start + 32] for k, v in rows.items()}, work, options)
        for key in done:
            done[key].extend(batch[key])
    return {key: done[key] if key in done else rows[key] for key in keep}


def _process_batch(batch: dict[str, list], work: dict[str, Any], options: dict[str, Any]) -> dict[str, list]:
    """Decode, do the face work, resize and encode a batch of rows (runs in worker processes)."""
    face_work, opts = FaceWork(**work), PrepareOptions(**options)
    images, status = [], []
    for row, value in enumerate(batch["image"]):
        name = image_name(value, batch["id"][row])
        try:
            data = read_bytes(value, name)
            image = decode(data, name)
            box = batch["face_box"][row] if "face_box" in batch else None
            landmarks = batch["landmarks"][row] if "landmarks" in batch else None
            face, note = face_from(image, face_work, box, landmarks, opts.image_size, name)
        except BadImageError as err:
            if not opts.skip_bad_images:
                raise UserInputError(f"{err} (pass --skip_bad_images to leave such images out and list them)") from None
            images.append(None)
            status.append(f"bad:{err.reason}")
            continue
        if face is None:
            images.append(None)
            status.append(note)
            continue
        image_format = choose_format(image.format, opts.image_format)
        untouched = face is image and not image.info.get("reoriented")
        if untouched and image.mode in ("L", "RGB") and image.format == image_format:
            encoded = data  # pixels untouched: keep the original file's bytes
        else:
            encoded = encode(storable(face), image_format, opts.jpeg_quality)
        images.append({"bytes": encoded, "path": None})
        status.append(note)
    return {"image": images, "_status": status}


def face_from(
    image: PILImage.Image,
    work: FaceWork,
    box: list[float] | None,
    landmarks: list[float] | None,
    image_size: int,
    name: str = "image",
) -> tuple[PILImage.Image | None, str]:
    """The face to store (None when detection finds none and drops the frame) and a status note."""
    aligned_size = image_size or ALIGNED_SIZE
    note = ""
    face = image
    try:
        if work.detect:
            detector = get_detector(work.detector)
            found = detector.detect(image)
            if found is None:
                if work.no_face == "drop":
                    return None, "no_face"
                side = min(image.size)
                face = crop_to_box(image, ((image.width - side) / 2, (image.height - side) / 2, side, side))
                note = "no_face_kept"
            else:
                face, note = crop_detected(image, found, detector, DETECTION_MARGIN, work.align, aligned_size)
        elif work.align:
            if landmarks is None:
                raise BadImageError(name, "no landmarks to align on")
            face = align_on_eyes(image, *eye_centres(landmarks), aligned_size)
        elif work.crop_box:
            if box is None:
                raise BadImageError(name, "no face box")
            face = crop_to_box(image, box)
    except ValueError as err:
        raise BadImageError(name, str(err)) from None
    return fit_size(face, image_size), note


def crop_detected(
    image: PILImage.Image, found: Box, detector: Any, widening: float, align: bool, aligned_size: int
) -> tuple[PILImage.Image, str]:
    """The face in detected box `found`: widened to a square, cropped, and aligned on detected eyes if `align`.

    Shared by `sspa-prepare` (the largest face of a frame) and inference (`sspa_hf.commands.photos`, every face),
    so a face is prepared the same way at training and at inference. The note is "not_aligned" when no eyes
    were found."""
    square = widen(found, widening, image.width, image.height)
    face = crop_to_box(image, square)
    if not align:
        return face, ""
    eyes = detector.detect_eyes(face)
    if eyes is None:
        return face, "not_aligned"
    (lx, ly), (rx, ry) = eyes
    offset_x, offset_y = round(square[0]), round(square[1])
    left, right = (lx + offset_x, ly + offset_y), (rx + offset_x, ry + offset_y)
    return align_on_eyes(image, left, right, aligned_size), ""


def fit_size(face: PILImage.Image, image_size: int) -> PILImage.Image:
    """A face larger than `image_size` resized to `image_size` square (0 keeps every size), as stored by prepare."""
    if image_size and max(face.size) > image_size:
        return face.resize((image_size, image_size), PILImage.Resampling.BILINEAR)
    return face
