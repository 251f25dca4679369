"""Checkpoints that survive a kill mid-write: staged, fsynced, renamed into place; checked before a resume.

A checkpoint is written into `output_dir/.saving/checkpoint-N` and renamed to `output_dir/checkpoint-N` only once
every file is on disk, so a `checkpoint-*` folder is either complete or absent. `checkpoint_problem` still checks
a folder's files (torn by an older version, a copy, a full disk), and `latest_complete_checkpoint` resumes from
the newest one that passes, saying which it skipped and why. SIGTERM arriving during a save waits for its end.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError, safe_open

from ..errors import Terminated, UserInputError
from .folder import SELECTION_STATE, TRAINER_STATE

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
_TORCH_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state.pth")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is torn: `safe_open` refuses a file whose size is not the header's (any cut)."""
    try:
        with safe_open(path, framework="numpy"):
            return None
    except (SafetensorError, OSError):
        return f"{path.name} is truncated or corrupt ({path.stat().st_size} bytes)"


def torch_file_problem(path: Path) -> str | None:
    """Why a torch.save file (a zip archive) is torn: a cut-off file has no readable central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return f"{path.name} is truncated or corrupt ({path.stat().st_size} bytes)"
    return None


def checkpoint_problem(folder: str | Path, need_optimizer: bool = True) -> str | None:
    """Why `folder` cannot be resumed from (None if it can): a missing or torn file, in words."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    names = {p.name for p in folder.iterdir()}
    if not names:
        return "empty folder"
    required = [TRAINER_STATE, SELECTION_STATE] + (["optimizer.pt", "scheduler.pt"] if need_optimizer else [])
    missing = [name for name in required if name not in names]
    if not any(name in names for name in _WEIGHTS):
        missing.insert(0, "model.safetensors")
    if missing:
        return f"{', '.join(missing)} missing"
    try:
        json.loads((folder / TRAINER_STATE).read_text())
    except (ValueError, OSError):
        return f"{TRAINER_STATE} is truncated or corrupt"
    for name in sorted(names):
        path = folder / name
        problem = None
        if name.endswith(".safetensors"):
            problem = safetensors_problem(path)
        elif name in _TORCH_FILES or name.startswith("rng_state_") or name == "pytorch_model.bin":
            problem = torch_file_problem(path)
        if problem:
            return problem
    return None


def checkpoints_newest_first(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, highest N first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def latest_complete_checkpoint(
    output_dir: str | Path, need_optimizer: bool = True
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest checkpoint that passes `checkpoint_problem`, and the newer ones skipped with their reasons."""
    skipped = []
    for folder in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(folder, need_optimizer)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def resume_line(chosen: Path, skipped: list[tuple[Path, str]]) -> str:
    """One line: which checkpoint a resume takes and which newer ones it skipped, and why."""
    line = f"resuming from {chosen}"
    if skipped:
        line += " (skipped " + "; ".join(f"{p.name}: {why}" for p, why in skipped) + ")"
    return line


def resolve_resume(resume: str | bool | None, output_dir: str | Path, need_optimizer: bool = True) -> str | None:
    """`resume_from_checkpoint` as a checkpoint folder, or None: `true` is the newest complete checkpoint of
    `output_dir` (said in one line), a given folder must be complete; else a UserInputError."""
    if resume is True or (isinstance(resume, str) and resume.lower() == "true"):
        chosen, skipped = latest_complete_checkpoint(output_dir, need_optimizer)
        if chosen is None:
            why = "; ".join(f"{p.name}: {reason}" for p, reason in skipped)
            raise UserInputError(
                f"No checkpoint to resume from in output_dir {output_dir}" + (f" (none complete: {why})" if why else "")
            )
        print(f"sspa-train: {resume_line(chosen, skipped)}", file=sys.stderr)
        return str(chosen)
    if isinstance(resume, str) and resume:
        if problem := checkpoint_problem(resume, need_optimizer):
            raise UserInputError(f"resume_from_checkpoint {resume}: {problem}")
        return resume
    return None


def fsync_tree(folder: Path) -> None:
    """Flush every file of `folder` and the folder itself to disk (a rename is durable only after this)."""
    for path in folder.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, final: Path) -> None:
    """Make a fully written checkpoint visible: fsync it, replace any old folder of that name, rename, fsync."""
    fsync_tree(staged)
    if final.exists():  # a torn folder an older version left, or the same step saved again
        shutil.rmtree(final)
    os.replace(staged, final)
    fsync_dir(final.parent)


def disk_full(exc: BaseException, folder: Path) -> str | None:
    """'no space left on device (N MB free in FOLDER)' when `exc` (or its cause) is a full disk, else None.

    torch's zip writer reports ENOSPC as "unexpected pos", safetensors as an I/O error: the free space decides."""
    free = shutil.disk_usage(folder).free if folder.exists() else None
    chain, seen = [], exc
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    full = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain) or any(
        "No space left" in str(e) or "unexpected pos" in str(e) for e in chain
    )
    if not full and (free is None or free > 1 << 20):
        return None
    shown = f"{free / 2**20:.1f} MB free" if free is not None else "free space unknown"
    return f"no space left on device ({shown} in {folder})"


class _Shield:
    depth = 0
    pending: int | None = None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A SIGTERM (`terminate`) arriving inside this block takes effect when the block ends: a save finishes."""
    _Shield.depth += 1
    try:
        yield
    finally:
        _Shield.depth -= 1
    if _Shield.depth == 0 and _Shield.pending is not None:
        signum, _Shield.pending = _Shield.pending, None
        raise Terminated(signum)


def terminate(signum: int, frame: object) -> None:
    """SIGTERM handler: end the run like Ctrl-C (exit status 143), but never in the middle of a checkpoint save."""
    if _Shield.depth:
        _Shield.pending = signum
        return
    raise Terminated(signum)
