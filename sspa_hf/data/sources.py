"""The entry points from a spec string to data: `read_source` (parse only), `load_source` (ready splits) and
`prepare_source` (a prepared folder). They join the layers: spec -> reader registry -> cache/prepare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datasets import DatasetDict

from ..errors import UserInputError
from .cache import PrepareOptions, auto_cache, cached, tree_fingerprint, up_to_date
from .faces import DEFAULT_DETECTOR, DETECTION_MARGIN
from .prepare import ALIGNED_SIZE, PrepareResult, prepare, prepare_cached
from .readers import FORMATS, format_list
from .readers.guess import guess_format
from .saved import is_saved_dataset, load_prepared, read_manifest
from .schema import GEOMETRY_COLUMNS, Options, RawSource, ReadContext, SourceSpec
from .spec import parse_spec


def read_source(spec: SourceSpec | str, ctx: ReadContext | None = None) -> RawSource:
    """Parse a raw source (no pixel work): its splits, source files and the face work it still needs."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.format is None:
        return read_prepared(Path(spec.path))
    fmt = FORMATS[spec.format]
    if fmt.needs_path and not spec.path:
        raise UserInputError(f"dataset spec {spec.text!r}: no PATH after {spec.format}: ({fmt.description})")
    options = Options(spec)
    source = fmt.read(Path(spec.path).expanduser(), options, ctx or ReadContext())
    options.done()
    return source


def read_prepared(folder: Path) -> RawSource:
    """A prepared / `save_to_disk` folder as a RawSource (its files make the fingerprint)."""
    if not folder.exists():
        raise UserInputError(f"dataset folder {folder} not found")
    if not is_saved_dataset(folder):
        guess = guess_format(folder)
        hint = f"; it looks like {guess}: use {guess}:{folder}" if guess else ""
        raise UserInputError(
            f"{folder} is not a prepared dataset (no dataset_dict.json): write FORMAT:PATH, FORMAT one of "
            f"{format_list()}{hint}"
        )
    return RawSource(name=folder.name, splits=load_prepared(folder), meta_files=sorted(folder.rglob("*.arrow")))


def load_source(spec: str) -> DatasetDict:
    """Load a dataset spec (`FORMAT:PATH[?k=v&...]` or a prepared folder) as splits with the shared columns.

    Sources whose faces need pixel work (AffectNet's box crop, CAER-S detection, alignment) are prepared once into
    the cache (`$SSPA_HF_CACHE`, default ~/.cache/sspa_hf) and loaded from there; run `sspa-prepare` to choose the
    output folder, face size and number of processes yourself.
    """
    parsed = parse_spec(spec)
    if parsed.format is not None and FORMATS[parsed.format].face_work:  # an up-to-date auto-prepared copy wins
        ready = cached(parsed)
        if ready is not None:
            return ready
    source = read_source(parsed)
    source.log_dropped()
    if source.face_work.needed:
        return prepare_cached(parsed, source)
    return strip_geometry(source.splits)


def prepare_source(spec: str | SourceSpec, output_dir: str | Path, options: PrepareOptions) -> PrepareResult:
    """Read `spec`, then write its prepared DatasetDict to `output_dir`, or reuse `output_dir` if it is up to date."""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    output_dir = Path(output_dir)
    fingerprint = tree_fingerprint(parsed, options, exclude=output_dir)
    manifest = up_to_date(output_dir, fingerprint)
    if manifest is not None:
        return PrepareResult(output_dir, True, manifest)
    source = read_source(parsed, ReadContext(skip_bad_images=options.skip_bad_images))
    source.log_dropped()
    return prepare(source, parsed, output_dir, options, fingerprint)


def strip_geometry(splits: DatasetDict) -> DatasetDict:
    """Drop the per-row geometry columns (face box, landmarks) that only `sspa-prepare` uses."""
    return DatasetDict(
        {name: ds.remove_columns([c for c in GEOMETRY_COLUMNS if c in ds.column_names]) for name, ds in splits.items()}
    )


def face_preparation(spec: str) -> dict[str, Any]:
    """How the faces of a loaded data set were prepared, as recorded in the model's config (`face_preparation`).

    `{"faces": "detected", "detector": "haar"|"dlib", "box_widening": 1.2, "align": bool, "crop_size": N}` for
    detected faces (inference repeats this with `--detect_faces`), "cropped_to_box" / "aligned_on_landmarks" for
    faces cut with the data set's own boxes or landmarks, and "given" for images used as they are (given face crops)."""
    parsed = parse_spec(spec)
    if parsed.format is None:
        folder: Path | None = Path(parsed.path).expanduser()
    elif FORMATS[parsed.format].face_work:
        folder = auto_cache(parsed)[0]
    else:
        folder = None
    manifest = (read_manifest(folder) if folder is not None else None) or {}
    work = manifest.get("face_work") or {}
    size = int((manifest.get("options") or {}).get("image_size", 0))
    if work.get("detect"):
        return {
            "faces": "detected",
            "detector": work.get("detector", DEFAULT_DETECTOR),  # manifests before the choice: Haar
            "box_widening": DETECTION_MARGIN,
            "align": bool(work.get("align")),
            "crop_size": size or (ALIGNED_SIZE if work.get("align") else 0),
        }
    if work.get("align"):
        return {"faces": "aligned_on_landmarks", "crop_size": size or ALIGNED_SIZE}
    if work.get("crop_box"):
        return {"faces": "cropped_to_box", "crop_size": size}
    return {"faces": "given", "crop_size": size}
