"""Where the inference commands write, checked before any work (as sspa-train checks its output_dir): a result
computed for minutes must never be lost to a path that cannot be written."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import UserInputError


def _nearest_existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (where the folders not made yet will be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(folder: Path, flag: str, fix: str = "") -> None:
    """`folder` (made later if missing) can hold new files: it is no file, nor inside one, and can be written
    (tried with a temporary file: permission bits do not stop root, a read-only mount does). `fix` ends the
    refusal (default: choose another `flag`)."""
    fix = fix or f"choose another {flag}"
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise UserInputError(f"{flag} {folder} {where}; {fix}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        where = "is not writable" if existing == folder else f"cannot be made: {existing} is not writable"
        raise UserInputError(f"{flag} {folder} {where} ({exc.strerror or exc}); {fix}") from None


def check_output_file(path: Path, flag: str) -> None:
    """`path` can be written: no folder of that name, its folder can hold new files, and an existing file there is
    not read-only (opened for appending, which leaves it as it is)."""
    if path.is_dir():
        raise UserInputError(f"{flag} {path} is a folder; give a file name")
    check_output_folder(path.parent, f"{flag} {path}: its folder", f"choose another {flag}")
    if path.exists():
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            raise UserInputError(f"{flag} {path} cannot be replaced ({exc.strerror or exc}); choose another") from None
