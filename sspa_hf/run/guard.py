"""The training output folder's guard: one writer at a time (a lock file), no finished run overwritten, and
`run_status.json` (state, PID, host, heartbeat), so a run killed with -9 can be told from one still running.

The writer holds an OS lock (`flock`) on `.sspa-train.lock` for the whole run: the kernel drops it when the process
ends, however it ends, so a run restarted in a fresh container (PID 1 again, same host name) is never refused by
its own dead predecessor, while a live writer always refuses a second one. The file's PID, host and start only
name the writer in the refusal. Where the filesystem has no OS locks (flock fails), and for a writer on another
host whose lock may not be seen here, the older rules decide: the PID on this host, the heartbeat elsewhere.

Everything here that can refuse runs before anything is written into the folder: a refused command leaves it
byte-identical.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # no OS locks here (Windows): the PID and heartbeat rules alone decide
    fcntl = None  # type: ignore[assignment]

from ..errors import UserInputError, first_line
from .checkpoints import checkpoints_newest_first, latest_complete_checkpoint
from .folder import DATA_ARGS, LOCK, RECIPE, RUN_STATUS, STAGING

HEARTBEAT_S = 30.0
STALE_AFTER_S = 10 * HEARTBEAT_S  # a lock from another host whose heartbeat is older than this is stale
# What a resume must train on again: the run's selection state is per sample of this data.
RESUME_KEYS = ("target_dataset", "auxiliary_dataset", "auxiliary_fraction", "auxiliary_stratified", "seed")
# Files a failed attempt may leave that are only bookkeeping: a folder holding nothing else is removed.
BOOKKEEPING = {RUN_STATUS, LOCK, DATA_ARGS, RECIPE, STAGING}


def _error_line(error: BaseException) -> str:
    """A failure as `Type: first line`; an interruption as its own first line (its signal) or its class name."""
    line = first_line(error)
    return (
        line
        if isinstance(error, KeyboardInterrupt) or line == type(error).__name__
        else f"{type(error).__name__}: {line}"
    )


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write atomically (temporary file + rename): a kill mid-write never leaves a torn file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, path)


def lock_holder(output_dir: Path) -> dict[str, Any] | None:
    """The live run holding `output_dir`'s lock (its PID, host, start), or None when unlocked or stale.

    Held: another process holds the OS lock. Free on this host: stale, whatever became of its PID (reused by a
    restarted container). Where the lock cannot be asked (no OS locks on this filesystem) or its writer is on
    another host: stale when its PID is gone on this host, or, another host, no heartbeat for 5 minutes."""
    path = output_dir / LOCK
    if not path.is_file():
        return None
    record = _read_json(path) or {}
    held = _os_lock_held(path)
    if held:
        return {**record, "by": "lock"}
    if not record:
        return None
    local = record.get("host") == socket.gethostname()
    if local and held is False:
        return None
    if local:
        try:
            os.kill(int(record.get("pid", 0)), 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return {**record, "by": "pid"} if int(record.get("pid", 0)) > 0 else None
    status = _read_json(output_dir / RUN_STATUS) or {}
    age = time.time() - float(status.get("heartbeat_unix", 0))
    return {**record, "by": "heartbeat", "heartbeat_age": age} if age < STALE_AFTER_S else None


def _os_lock_held(path: Path) -> bool | None:
    """Whether another open file holds the OS lock on `path`; None where that cannot be asked."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two probes never refuse each other
    except BlockingIOError:
        return True
    except OSError:
        return None  # ENOLCK, EOPNOTSUPP...: no OS locks on this filesystem
    finally:
        os.close(descriptor)  # closing drops the probe's own lock
    return False


def in_use(output_dir: Path, holder: dict[str, Any]) -> UserInputError:
    """The one-line refusal of a folder whose lock a live run holds (and, where only its PID or heartbeat tells,
    what makes it stale)."""
    why = ""
    if holder.get("by") == "pid":
        why = (
            f" (this filesystem has no file locks, so only the PID tells: if PID {holder.get('pid')} is no training "
            f"run, e.g. after a container restart, delete {output_dir / LOCK})"
        )
    elif holder.get("by") == "heartbeat":
        why = (
            f" (its heartbeat is {holder['heartbeat_age']:.0f} s old: a run on another host counts as ended "
            f"{STALE_AFTER_S / 60:.0f} minutes after its last one)"
        )
    return UserInputError(
        f"output_dir {output_dir} is in use by a training run (PID {holder.get('pid')} on {holder.get('host')}, "
        f"since {holder.get('started')}); wait for it to end or choose another --output_dir{why}"
    )


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (where a folder not made yet will be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(output_dir: Path, resume: bool, overwrite: bool, data_record: dict[str, Any]) -> None:
    """Refuse, before writing anything, a folder in use, a complete run, an unfinished run not resumed, a resume
    on other data, and a folder that cannot be written."""
    holder = lock_holder(output_dir) if output_dir.is_dir() else None
    if holder is not None:
        raise in_use(output_dir, holder)
    status = _read_json(output_dir / RUN_STATUS) or {}
    complete = status.get("status") == "complete" or (
        not status and (output_dir / "config.json").is_file() and (output_dir / "model.safetensors").is_file()
    )
    if complete and not overwrite:
        what = "nothing to resume" if resume else "training again would replace it"
        raise UserInputError(
            f"output_dir {output_dir} holds a complete run (finished {status.get('time', 'earlier')}): {what}; "
            "choose another --output_dir, or pass --overwrite_output_dir true to replace it"
        )
    if not complete and not resume and not overwrite and checkpoints_newest_first(output_dir):
        last = latest_complete_checkpoint(output_dir)[0]
        raise UserInputError(
            f"output_dir {output_dir} holds an unfinished run ({status.get('status', 'no run_status.json')}, last "
            f"complete checkpoint: {last.name if last else 'none'}): resume it with --resume_from_checkpoint true, "
            "or pass --overwrite_output_dir true to start over"
        )
    if resume and not overwrite:
        _check_same_data(output_dir, data_record)
    check_writable(output_dir)


def _check_same_data(output_dir: Path, data_record: dict[str, Any]) -> None:
    """A resume must train on the data the run trained on (data_args.json), else its checkpoints do not fit."""
    before = _read_json(output_dir / DATA_ARGS)
    if before is None:
        return
    for key in RESUME_KEYS:
        if key in before and before[key] != data_record.get(key):
            raise UserInputError(
                f"--{key} {data_record.get(key)!r} differs from {before[key]!r}, which the run in {output_dir} trained "
                f"on ({DATA_ARGS}): resume with the same data, or choose another --output_dir"
            )


def check_writable(output_dir: Path, minimum_free: int = 1 << 20) -> None:
    """The folder (or the nearest existing parent it will be made in) must be writable and have some space."""
    existing = nearest_existing(output_dir)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"output_dir {output_dir}: {existing} is not writable (read-only or not yours)")
    free = shutil.disk_usage(existing).free
    if free < minimum_free:
        raise UserInputError(f"output_dir {output_dir}: no space left on device ({free / 2**20:.1f} MB free)")


def check_free_space(output_dir: Path, model: Any) -> None:
    """Before training: room for at least one checkpoint (weights + optimizer state, about 3x the parameters)."""
    needed = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(nearest_existing(output_dir)).free
    if free < needed:
        raise UserInputError(
            f"output_dir {output_dir}: {free / 2**20:.1f} MB free, a checkpoint of this model needs about "
            f"{needed / 2**20:.1f} MB: free some space or choose another --output_dir"
        )


class RunLock:
    """`output_dir/.sspa-train.lock`: the OS lock held for the whole run, the file naming its PID, host and start.

    A process forked while it is held (data-loader and pool workers) does not keep it: a worker that outlives a
    killed run does not lock the folder."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / LOCK
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self) -> RunLock:
        """Take the lock, or refuse (UserInputError) while a live run holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        for _ in range(3):
            try:
                descriptor, created = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644), True
            except FileExistsError:
                try:
                    descriptor, created = os.open(self.path, os.O_RDWR), False
                except FileNotFoundError:  # released meanwhile
                    continue
            locked = _lock(descriptor)
            if locked is None and not created:  # no OS locks here: the record alone tells a live holder
                holder = lock_holder(self.path.parent)
                os.close(descriptor)
                if holder is not None:
                    raise in_use(self.path.parent, holder)
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            if locked is False:
                os.close(descriptor)
                raise in_use(self.path.parent, lock_holder(self.path.parent) or _read_json(self.path) or {})
            if not _same_file(descriptor, self.path):  # released (removed) between our open and our lock: again
                os.close(descriptor)
                continue
            os.ftruncate(descriptor, 0)
            os.write(descriptor, json.dumps(record).encode())
            self._descriptor = descriptor
            _HELD.add(descriptor)
            return self
        raise UserInputError(f"output_dir {self.path.parent}: could not take {LOCK}")

    def release(self) -> None:
        """Remove the file, then drop the lock (closing it): a process waiting on the old file then takes a new one."""
        if self._descriptor is None:
            return
        self.path.unlink(missing_ok=True)
        _HELD.discard(self._descriptor)
        os.close(self._descriptor)
        self._descriptor = None


_HELD: set[int] = set()  # lock descriptors of this process, closed in forked children (`RunLock`)


def _forget_held_locks() -> None:
    """In a forked child: close the parent's lock descriptors (closing one copy never unlocks the parent's)."""
    for descriptor in _HELD:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_held_locks)


def _lock(descriptor: int) -> bool | None:
    """Take the exclusive OS lock without waiting: True taken, False held by another, None: no OS locks here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return None
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (opened.st_dev, opened.st_ino) == (now.st_dev, now.st_ino)


def start_over(output_dir: Path) -> None:
    """`--overwrite_output_dir true`: remove the old run's checkpoints and status (a later resume must not pick
    them up); the new run overwrites the rest."""
    for folder in [*checkpoints_newest_first(output_dir), output_dir / STAGING]:
        shutil.rmtree(folder, ignore_errors=True)
    (output_dir / RUN_STATUS).unlink(missing_ok=True)


def remove_if_only_bookkeeping(output_dir: Path) -> bool:
    """After a failure before any result: remove the folder this command made if it holds only bookkeeping."""
    if not output_dir.is_dir() or any(p.name not in BOOKKEEPING for p in output_dir.iterdir()):
        return False
    shutil.rmtree(output_dir, ignore_errors=True)
    return True


class RunStatus:
    """`run_status.json` in the output folder: running, complete, failed or interrupted, with the PID, host and a
    heartbeat (every 30 s while running), so that a partial output is never mistaken for a finished one."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.path, self.enabled = output_dir / RUN_STATUS, enabled
        self.record: dict[str, Any] = {}
        self.resumed_from: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def write(self, state: str, error: BaseException | None = None, last_checkpoint: bool = False) -> None:
        """Record `state` (and `error` in one line); with `last_checkpoint`, also the checkpoint a resumed run would
        start from."""
        if not self.enabled:
            return
        if state != "running":
            self._stop.set()
        record = {"status": state, "time": _now(), "argv": sys.argv, "pid": os.getpid(), "host": socket.gethostname()}
        record.update(heartbeat=record["time"], heartbeat_unix=time.time())
        if self.resumed_from:
            record["resumed_from"] = self.resumed_from
        if error is not None:
            record["error"] = _error_line(error)
        if last_checkpoint:
            last = latest_complete_checkpoint(self.path.parent)[0]
            record["last_checkpoint"] = str(last) if last else None
            print(
                f"sspa-train: run {state}; last checkpoint: {last or 'none yet'} (--resume_from_checkpoint true)",
                file=sys.stderr,
            )
        with self._lock:
            self.record = record
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_json(self.path, record)
        if state == "running" and self._beat is None:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name="run_status heartbeat")
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                if self._stop.is_set() or self.record.get("status") != "running":
                    return
                self.record.update(heartbeat=_now(), heartbeat_unix=time.time())
                with contextlib.suppress(OSError):  # a full disk must not kill the run from this thread
                    _write_json(self.path, self.record)


def data_record(data_args: Any, seed: int) -> dict[str, Any]:
    """What data_args.json records (without the sample count, known only once the data is built)."""
    return {**asdict(data_args), "seed": seed}
