"""Source specs: `FORMAT:PATH[?key=value&key=value]`, or a bare PATH to a prepared folder.

One string names a dataset everywhere (configs, `sspa-prepare`, the command lines), so it is parsed once here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from sspa_hf.errors import UserInputError

#: The formats `load_source` reads, with what PATH is for each.
FORMATS: dict[str, str] = {
    "rafdb": "RAF-DB basic folder (EmoLabel/, Image/aligned/)",
    "affectnet": "AffectNet folder (Manually_Annotated_file_lists/ + images, or train_set/ + val_set/)",
    "caer_s": "CAER-S folder (train/, test/ with class folders)",
    "fer2013": "fer2013.csv, a folder holding it, or the image-folder export (train/, test/)",
    "ferplus": "folder holding fer2013.csv and fer2013new.csv",
    "fer2013_ferplus": "parquet folder (train.parquet, validation.parquet[, test.parquet])",
    "imagefolder": "folder of class folders, or of split folders of class folders",
    "hf": "a datasets hub id or local dataset folder",
    "synthetic": "nothing (built-in generated faces): synthetic:?role=auxiliary&n=800",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class SourceSpec:
    """A parsed spec; `format` is None for a bare path to a prepared / `save_to_disk` folder."""

    text: str
    format: str | None
    path: str
    options: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> str:
        """The spec with its options sorted, so equal specs compare (and hash) equal."""
        if self.format is None:
            return self.path
        query = "&".join(f"{key}={value}" for key, value in sorted(self.options.items()))
        return f"{self.format}:{self.path}" + (f"?{query}" if query else "")

    def with_options(self, **options: str) -> SourceSpec:
        """A copy with some options added or replaced."""
        merged = {**self.options, **options}
        return SourceSpec(text=self.text, format=self.format, path=self.path, options=merged)


def parse_spec(text: str) -> SourceSpec:
    """Parse `FORMAT:PATH[?k=v&...]`; a string without a known `FORMAT:` prefix is a bare path."""
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"empty dataset spec {text!r}; expected FORMAT:PATH or a prepared folder")
    text = text.strip()
    head, sep, rest = text.partition(":")
    if not sep or head not in FORMATS:
        if sep and head.isidentifier() and len(head) > 1 and not Path(text).exists():
            known = ", ".join(FORMATS)
            raise UserInputError(f"dataset spec {text!r}: unknown format {head!r} (known formats: {known})")
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


class Options:
    """Typed access to a spec's options; `done()` rejects any option the reader did not ask for."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._asked: set[str] = set()

    def _raw(self, key: str) -> str | None:
        self._asked.add(key)
        return self.spec.options.get(key)

    def _bad(self, key: str, value: str, expected: str) -> UserInputError:
        return UserInputError(
            f"dataset spec {self.spec.text!r}: option {key}={value!r} is invalid; expected {expected}"
        )

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """One of `choices` (case-insensitive)."""
        value = self._raw(key)
        if value is None:
            return default
        if value.lower() not in choices:
            raise self._bad(key, value, "one of " + ", ".join(choices))
        return value.lower()

    def flag(self, key: str, default: bool) -> bool:
        """A boolean written 1/0, true/false, yes/no or on/off."""
        value = self._raw(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise self._bad(key, value, "1 or 0")

    def integer(self, key: str, default: int | None, minimum: int | None = None) -> int | None:
        """An integer, at least `minimum` when given."""
        value = self._raw(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self._bad(key, value, "an integer") from None
        if minimum is not None and number < minimum:
            raise self._bad(key, value, f"an integer >= {minimum}")
        return number

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string as given."""
        value = self._raw(key)
        return default if value is None else value

    def done(self) -> None:
        """Raise if the spec holds an option this format does not read."""
        unknown = sorted(set(self.spec.options) - self._asked)
        if unknown:
            accepted = ", ".join(sorted(self._asked)) or "none"
            raise UserInputError(
                f"dataset spec {self.spec.text!r}: unknown option {unknown[0]!r} for format {self.spec.format} "
                f"(accepted: {accepted})"
            )


def parse_label_map(text: str, where: str) -> dict[str, str | None]:
    """Parse `native1:ours1,native2:ours2` (ours may be `drop`); names are checked against the canonical ones."""
    from sspa_hf.labels import EXPRESSIONS

    mapping: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        native, colon, ours = item.rpartition(":")
        if not colon or not native:
            raise UserInputError(f"{where}: label_map entry {item!r} is not native:ours")
        ours = ours.strip().lower()
        if ours in ("drop", "-"):
            mapping[native.strip()] = None
        elif ours in EXPRESSIONS:
            mapping[native.strip()] = ours
        else:
            raise UserInputError(
                f"{where}: label_map maps {native!r} to {ours!r}, which is not one of {', '.join(EXPRESSIONS)} or drop"
            )
    if not mapping:
        raise UserInputError(f"{where}: label_map is empty")
    return mapping
