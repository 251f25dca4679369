"""Reading, converting and encoding face images, with errors that name the file."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import UserInputError
from ..model.pixels import to_rgb

#: File extensions read as images in folder layouts and by sspa-predict (lower case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: Formats whose pixels are exact; a face cut from one is stored as PNG, from any other as JPEG.
LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "TIFF", "GIF", "PPM", "PGM"})
ORIENTATION = 0x0112  # the EXIF orientation tag


#: PIL's messages name the stream they read (`<_io.BytesIO object at 0x...>`): an address that tells a user nothing.
ADDRESS = re.compile(r"\s*<[^>]* at 0x[0-9a-fA-F]+>")
UNIDENTIFIED = "not an image file PIL can read (unknown or corrupt format)"


class BadImageError(Exception):
    """An image that cannot be read: `name` says which, `reason` why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read image {name}: {reason}")
        self.name = name
        self.reason = reason


def image_name(value: dict[str, Any] | None, fallback: str) -> str:
    """The file an `Image(decode=False)` value came from, or `fallback` (e.g. the row id) for in-memory bytes."""
    if value and value.get("path"):
        return str(value["path"])
    return fallback


def read_bytes(value: dict[str, Any] | None, name: str) -> bytes:
    """The encoded bytes of an `Image(decode=False)` value, read from its path when it holds none."""
    if value is None:
        raise BadImageError(name, "no image")
    data = value.get("bytes")
    if data is not None:
        return data
    path = value.get("path")
    if not path:
        raise BadImageError(name, "no image")
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImageError(name, "file not found") from None
    except OSError as err:
        raise BadImageError(name, str(err)) from None


def decode(data: bytes, name: str) -> Image.Image:
    """Decode image bytes fully (so truncated files fail here, not later), upright by their EXIF orientation.

    `format` holds the file format; `info["reoriented"]` is True when the EXIF orientation turned the pixels (as
    `datasets.Image` and the transformers pipelines also do).
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        if image.getexif().get(ORIENTATION, 1) != 1:
            ImageOps.exif_transpose(image, in_place=True)
            image.info["reoriented"] = True
    except UnidentifiedImageError:
        raise BadImageError(name, UNIDENTIFIED) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError(name, ADDRESS.sub("", str(err)).strip() or type(err).__name__) from None
    return image


def open_image(value: dict[str, Any] | None, name: str) -> Image.Image:
    """Decode an `Image(decode=False)` value; a bad image raises UserInputError naming the file."""
    try:
        return decode(read_bytes(value, name), name)
    except BadImageError as err:
        raise UserInputError(str(err)) from None


def storable(image: Image.Image) -> Image.Image:
    """Keep grey (L) and RGB as they are; anything else becomes RGB."""
    return image if image.mode in ("L", "RGB") else to_rgb(image)


def choose_format(source_format: str | None, requested: str) -> str:
    """`PNG` or `JPEG`: the requested one, or (auto) PNG for lossless sources and JPEG for lossy ones."""
    if requested in ("png", "jpeg"):
        return requested.upper()
    return "PNG" if (source_format or "PNG").upper() in LOSSLESS_FORMATS else "JPEG"


def encode(image: Image.Image, image_format: str, quality: int = 95) -> bytes:
    """Encode as PNG (fast compression) or JPEG (given quality, 4:4:4 chroma to keep face detail)."""
    buffer = io.BytesIO()
    if image_format == "PNG":
        image.save(buffer, format="PNG", compress_level=4)
    else:
        image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()
