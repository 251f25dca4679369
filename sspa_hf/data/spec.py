"""Source specs: `FORMAT:PATH[?key=value&key=value]`, or a bare PATH to a prepared folder.

One string names a dataset everywhere (configs, `sspa-prepare`, the command lines), so it is parsed once here,
against the formats of the reader registry.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from ..errors import UserInputError
from .readers import FORMATS, format_list
from .schema import SourceSpec


def parse_spec(text: str) -> SourceSpec:
    """Parse `FORMAT:PATH[?k=v&...]`; a string without a known `FORMAT:` prefix is a bare path."""
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"empty dataset spec {text!r}; expected FORMAT:PATH or a prepared folder")
    text = text.strip()
    head, sep, rest = text.partition(":")
    if not sep or head not in FORMATS:
        if sep and head.isidentifier() and len(head) > 1 and not Path(text).exists():
            raise UserInputError(f"dataset spec {text!r}: unknown format {head!r} (known formats: {format_list()})")
        if "?" in text and not Path(text).exists():
            raise UserInputError(f"dataset spec {text!r}: options (?key=value) need a FORMAT: prefix")
        return SourceSpec(text=text, format=None, path=text)
    path, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserInputError(f"dataset spec {text!r}: option {item!r} is not key=value")
        key = unquote(key).strip()
        if key in options:
            raise UserInputError(f"dataset spec {text!r}: option {key!r} given twice")
        options[key] = unquote(value).strip()
    return SourceSpec(text=text, format=head, path=unquote(path), options=options)
