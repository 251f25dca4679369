"""The cache of prepared folders: the options that shape them, source fingerprints, and where `load_source`
keeps what it prepares itself.

A fingerprint hashes the spec, the output options and (path, size, mtime) of every source file, so an up-to-date
folder is recognised before any source file is parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from . import synthetic
from .saved import is_saved_dataset, load_prepared, read_manifest
from .schema import RawSource, SourceSpec

PREPARE_VERSION = 1  # bump when the pixels produced for the same source and options change


@dataclass(frozen=True)
class PrepareOptions:
    """How faces are stored: at most `image_size` px square (0 keeps the crop), in which format, and how."""

    image_size: int = 224
    image_format: str = "auto"  # auto | png | jpeg
    jpeg_quality: int = 95
    skip_bad_images: bool = False
    num_proc: int = 1

    def key(self) -> dict[str, Any]:
        """The options that change the output (the number of processes does not)."""
        return {k: v for k, v in asdict(self).items() if k != "num_proc"}


def cache_root() -> Path:
    """`$SSPA_HF_CACHE`, else `$XDG_CACHE_HOME/sspa_hf`, else `~/.cache/sspa_hf`."""
    if os.environ.get("SSPA_HF_CACHE"):
        return Path(os.environ["SSPA_HF_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sspa_hf"


def _stat_line(path: str) -> bytes:
    try:
        st = os.stat(path)
        return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
    except OSError:
        return f"{path}\0missing\n".encode()


def _head(spec: SourceSpec, options: PrepareOptions, key: str = "") -> bytes:
    head = {"version": PREPARE_VERSION, "spec": spec.canonical(), "options": options.key(), "key": key}
    return json.dumps(head, sort_keys=True).encode()


def spec_paths(spec: SourceSpec) -> list[Path] | None:
    """The local files and folders a spec reads, or None when it reads a hub dataset (known only once loaded)."""
    if spec.format == "synthetic":
        return [Path(synthetic.__file__)]  # generated: the generator's code is the source
    path = Path(spec.path).expanduser()
    if spec.format == "hf" and not path.exists():
        return None
    paths = [path]
    if spec.format == "affectnet" and spec.options.get("images"):
        paths.append(Path(spec.options["images"]).expanduser())
    return paths


def tree_fingerprint(spec: SourceSpec, options: PrepareOptions, exclude: Path | None = None) -> str | None:
    """SHA-256 of the spec, the output options and (path, size, mtime) of every file under the spec's paths.

    Cheap enough to run before parsing anything (a stat per file), so an up-to-date cache is found without
    re-reading CSVs; `exclude` leaves out an output folder placed inside the source. None for hub datasets.
    """
    roots = spec_paths(spec)
    if roots is None:
        return None
    skip = exclude.resolve() if exclude is not None else None
    digest = hashlib.sha256(_head(spec, options))
    for root in roots:
        if not root.is_dir():
            digest.update(_stat_line(str(root)))
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(
                d for d in subfolders if not d.startswith(".") and (skip is None or Path(folder, d).resolve() != skip)
            )
            for name in sorted(files):
                digest.update(_stat_line(os.path.join(folder, name)))
    return digest.hexdigest()


def content_fingerprint(source: RawSource, spec: SourceSpec, options: PrepareOptions) -> str:
    """Fingerprint of a source that is not a local tree (a hub dataset): its content key and listed files."""
    digest = hashlib.sha256(_head(spec, options, source.content_key))
    for path in sorted({str(p) for p in source.meta_files}):
        digest.update(_stat_line(path))
    for name, split in source.splits.items():
        digest.update(f"split {name} {len(split)}\n".encode())
        for path in split.data.column("image").combine_chunks().field("path").to_pylist():
            if path:
                digest.update(_stat_line(path))
    return digest.hexdigest()


def up_to_date(output_dir: Path, fingerprint: str | None) -> dict[str, Any] | None:
    """The manifest of `output_dir` when it holds a complete prepared dataset of this fingerprint, else None."""
    manifest = read_manifest(output_dir)
    if fingerprint and manifest and manifest.get("fingerprint") == fingerprint and is_saved_dataset(output_dir):
        return manifest
    return None


def auto_cache(spec: SourceSpec) -> tuple[Path, PrepareOptions]:
    """Where `load_source` keeps a source it prepares itself, and with which options."""
    key = hashlib.sha1(spec.canonical().encode()).hexdigest()[:16]
    size = spec.options.get("image_size", "224")
    options = PrepareOptions(image_size=int(size) if size.isdigit() else 224, num_proc=min(4, os.cpu_count() or 1))
    return cache_root() / "prepared" / f"{spec.format}-{key}", options


def cached(spec: SourceSpec) -> DatasetDict | None:
    """The up-to-date auto-prepared form of `spec`, if there is one (checked without parsing the source)."""
    output_dir, options = auto_cache(spec)
    if up_to_date(output_dir, tree_fingerprint(spec, options)) is None:
        return None
    return load_prepared(output_dir)
