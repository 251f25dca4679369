"""`load_source(spec)`: one entry point from a spec string to a DatasetDict on the shared columns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from datasets import DatasetDict

from sspa_hf.data.schema import GEOMETRY_COLUMNS, RawSource, ReadContext
from sspa_hf.data.spec import FORMATS, Options, SourceSpec, parse_spec
from sspa_hf.errors import UserInputError

Reader = Callable[[Path, Options, ReadContext], RawSource]


def _reader(fmt: str) -> Reader:
    """The reader of a format (imported on demand, so loading one format does not import the others)."""
    if fmt == "rafdb":
        from sspa_hf.data.rafdb import read_rafdb as reader
    elif fmt == "affectnet":
        from sspa_hf.data.affectnet import read_affectnet as reader
    elif fmt == "caer_s":
        from sspa_hf.data.caer_s import read_caer_s as reader
    elif fmt == "fer2013":
        from sspa_hf.data.fer2013 import read_fer2013 as reader
    elif fmt == "ferplus":
        from sspa_hf.data.ferplus import read_ferplus as reader
    elif fmt == "fer2013_ferplus":
        from sspa_hf.data.fer2013_ferplus import read_fer2013_ferplus as reader
    elif fmt == "imagefolder":
        from sspa_hf.data.folder import read_imagefolder as reader
    else:
        raise AssertionError(f"no reader for {fmt}")
    return reader


def read_source(spec: SourceSpec | str, ctx: ReadContext | None = None) -> RawSource:
    """Parse a raw source (no pixel work): its splits, source files and the face work it still needs."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    ctx = ctx or ReadContext()
    options = Options(spec)
    if spec.format is None:
        from sspa_hf.data.prepare import read_prepared

        return read_prepared(Path(spec.path))
    if spec.format == "synthetic":
        return _read_synthetic(spec, options)
    if spec.format == "hf":
        from sspa_hf.data.hf import read_hf

        source = read_hf(spec.path, options, ctx)
    else:
        if not spec.path:
            raise UserInputError(f"dataset spec {spec.text!r}: no PATH after {spec.format}: ({FORMATS[spec.format]})")
        source = _reader(spec.format)(Path(spec.path).expanduser(), options, ctx)
    options.done()
    return source


def load_source(spec: str) -> DatasetDict:
    """Load a dataset spec (`FORMAT:PATH[?k=v&...]` or a prepared folder) as splits with the shared columns.

    Sources whose faces need pixel work (AffectNet's box crop, CAER-S detection, alignment) are prepared once into
    the cache (`$SSPA_HF_CACHE`, default ~/.cache/sspa_hf) and loaded from there; run `sspa-prepare` to choose the
    output folder, face size and number of processes yourself.
    """
    parsed = parse_spec(spec)
    if parsed.format in ("affectnet", "caer_s"):  # may need face work: an up-to-date auto-prepared copy wins
        from sspa_hf.data.prepare import cached

        ready = cached(parsed)
        if ready is not None:
            return ready
    source = read_source(parsed)
    source.log_dropped()
    if source.face_work.needed:
        from sspa_hf.data.prepare import prepare_cached

        return prepare_cached(parsed, source)
    return strip_geometry(source.splits)


def strip_geometry(splits: DatasetDict) -> DatasetDict:
    """Drop the per-row geometry columns (face box, landmarks) that only `sspa-prepare` uses."""
    return DatasetDict(
        {name: ds.remove_columns([c for c in GEOMETRY_COLUMNS if c in ds.column_names]) for name, ds in splits.items()}
    )


def _read_synthetic(spec: SourceSpec, options: Options) -> RawSource:
    role = options.text("role", "target")
    n = options.integer("n", None, minimum=1)
    image_size = options.integer("image_size", 48, minimum=8)
    seed = options.integer("seed", 0, minimum=0)
    n_test = options.integer("n_test", None, minimum=1)
    options.done()
    if spec.path:
        raise UserInputError(f"dataset spec {spec.text!r}: synthetic takes no path; write synthetic:?role=...&n=...")
    from sspa_hf.data.synthetic import load_synthetic

    splits = load_synthetic(role=role, n=n, image_size=image_size, seed=seed, n_test=n_test)
    return RawSource(name="synthetic", splits=splits, content_key=spec.canonical())
