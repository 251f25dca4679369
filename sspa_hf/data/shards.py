"""Resumable face work: `sspa-prepare` works in a partial folder next to the output, one split's rows in fixed-size
shards, each an arrow file written atomically (temporary name, fsync, rename). A re-run with the same fingerprint
takes over the partial folder of a dead process and does only the shards it lacks.

A partial folder holds `.sspa-train.lock` (PID, host: `run_guard` tells a live holder from a dead one),
`partial.json` (fingerprint, shard size) and `work/<split>/<index>.arrow`.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import Dataset, Features
from datasets.arrow_writer import ArrowWriter
from datasets.utils import tqdm

from ..errors import UserInputError
from ..run.guard import LOCK, RunLock, _read_json, _write_json, lock_holder

logger = logging.getLogger("sspa_hf.data")

SHARD_ROWS = 512  # rows per shard: what a killed prepare loses at most, per process
PARTIAL_RECORD = "partial.json"
WORK = "work"

ShardWork = Callable[[dict[str, list]], dict[str, list]]


def partial_folder(output_dir: Path, pid: int) -> Path:
    """Where process `pid` prepares `output_dir` before renaming it into place."""
    return output_dir.with_name(f".{output_dir.name}.partial-{pid}")


def open_partial(output_dir: Path, fingerprint: str) -> tuple[Path, RunLock]:
    """This process's partial folder, locked: a dead process's of the same fingerprint taken over, else a new one.

    Partial folders of dead processes with another fingerprint (or shard size) are removed; one a live process
    holds is refused, untouched."""
    mine = partial_folder(output_dir, os.getpid())
    record = {"fingerprint": fingerprint, "shard_rows": SHARD_ROWS}
    found: Path | None = None
    for folder in sorted(output_dir.parent.glob(glob.escape(f".{output_dir.name}.partial-") + "*")):
        holder = lock_holder(folder) if folder.is_dir() else None
        if holder is not None:
            raise UserInputError(
                f"{output_dir}: another sspa-prepare (PID {holder.get('pid')} on {holder.get('host')}, since "
                f"{holder.get('started')}) is writing it in {folder}; wait for it to end"
            )
        before = _read_json(folder / PARTIAL_RECORD) or {}
        if found is None and all(before.get(k) == v for k, v in record.items()):
            found = folder
            continue
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("removed %s: a killed prepare of another source or options", folder)
    if found is not None and found != mine:
        try:
            found.rename(mine)
        except FileNotFoundError:  # another run took it over at the same moment
            found = None
    if found is None:
        (mine / WORK).mkdir(parents=True)
    lock = RunLock(mine).acquire()
    if found is None:
        _write_json(mine / PARTIAL_RECORD, record)
    else:
        for item in mine.iterdir():  # what a run killed while assembling left besides its shards
            if item.name not in (WORK, PARTIAL_RECORD, LOCK):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        logger.info("resuming the killed prepare in %s (%d shards done)", mine, count_shards(mine))
    return mine, lock


def close_partial(staging: Path, lock: RunLock, finished: bool) -> None:
    """After the work: unlock; an unfinished folder is kept when it holds complete shards (a re-run resumes)."""
    lock.release()
    if finished or not staging.exists():
        return
    done = count_shards(staging)
    if done:
        logger.warning("kept %s (%d complete shards): the same command resumes from there", staging, done)
    else:
        shutil.rmtree(staging, ignore_errors=True)


def unmark(staging: Path, lock: RunLock) -> None:
    """Remove the partial folder's bookkeeping before it is renamed into the output folder."""
    lock.release()
    (staging / PARTIAL_RECORD).unlink(missing_ok=True)


def count_shards(staging: Path) -> int:
    """The complete shard files in a partial folder."""
    return len(list((staging / WORK).glob("*/[0-9]*.arrow")))


def shard_path(folder: Path, index: int) -> Path:
    return folder / f"{index:06d}.arrow"


def run_shards(rows: Dataset, folder: Path, work: ShardWork, features: Features, num_proc: int, desc: str) -> Dataset:
    """`work` over `rows` shard by shard into `folder` (shards already there are skipped), then all shards in order.

    A shard's content depends only on its rows, never on the process that did it, so any `num_proc` gives the same
    files."""
    folder.mkdir(parents=True, exist_ok=True)
    count = max(1, -(-len(rows) // SHARD_ROWS))
    pending = [i for i in range(count) if not shard_path(folder, i).exists()]
    if len(pending) < count:
        logger.info("%s: %d of %d shards done by an earlier run", desc, count - len(pending), count)
    processes = max(1, min(num_proc, len(pending)))
    with tqdm(total=count, initial=count - len(pending), desc=desc, unit=" shards") as bar:
        if processes == 1:
            for index in pending:
                write_shard(rows, index, folder, work, features)
                bar.update()
        else:
            context = multiprocessing.get_context()
            with context.Pool(processes, initializer=_take, initargs=(rows, folder, work, features)) as pool:
                for _ in pool.imap_unordered(_write_taken, pending):
                    bar.update()
    shards = [Dataset.from_file(str(shard_path(folder, i))) for i in range(count)]
    if len(shards) == 1:
        return shards[0]
    from datasets import concatenate_datasets

    return concatenate_datasets(shards)


def write_shard(rows: Dataset, index: int, folder: Path, work: ShardWork, features: Features) -> Path:
    """Do shard `index` of `rows` and write it atomically: a temporary file, fsync, rename."""
    start = index * SHARD_ROWS
    out = work(rows[start : min(len(rows), start + SHARD_ROWS)])
    final = shard_path(folder, index)
    temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    writer = ArrowWriter(features=features, path=str(temporary))
    writer.write_batch(out)
    writer.finalize()
    writer.close()
    descriptor = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, final)
    return final


_TAKEN: tuple[Any, ...] = ()


def _take(*args: Any) -> None:
    """Pool initializer: a worker keeps the rows and the work (inherited, not sent with every shard)."""
    global _TAKEN
    _TAKEN = args


def _write_taken(index: int) -> Path:
    rows, folder, work, features = _TAKEN
    return write_shard(rows, index, folder, work, features)
