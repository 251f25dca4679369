"""A killed `sspa-prepare` resumes: shards already written are kept, only the rest is done, and the result equals an
uninterrupted prepare; partial folders of other fingerprints are removed, a live process's is refused."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Image as DsImage
from datasets import load_from_disk
from helpers import AFFECTNET_HEADER, landmarks_68, save_image

import sspa_hf.data.prepare as prepare_module
import sspa_hf.data.shards as shards_module
from sspa_hf.commands.prepare import main
from sspa_hf.data import PrepareOptions, prepare_source
from sspa_hf.errors import UserInputError
from sspa_hf.run.folder import LOCK
from sspa_hf.run.guard import RunLock

pytestmark = pytest.mark.filterwarnings("ignore:.*no samples of class:UserWarning")

SHARD = 4
TRAIN, VALIDATION = 26, 9  # 7 train shards (the last one short), 3 validation shards


def build_affectnet(root: Path) -> str:
    """AffectNet's CSV layout with distinct generated 120 x 100 JPEGs and a face box each; returns the spec."""
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    marks = ";".join(f"{v:.2f}" for v in landmarks_68((50.0, 40.0), (74.0, 40.0)))
    for file_name, count, header in (("training.csv", TRAIN, True), ("validation.csv", VALIDATION, False)):
        with (lists / file_name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            if header:
                writer.writerow(AFFECTNET_HEADER)
            for i in range(count):
                rel = f"{i % 3}/{hashlib.sha1(f'{file_name}{i}'.encode()).hexdigest()}.jpg"
                save_image(root / "Manually_Annotated_Images" / rel, 120, 100, seed=i + 1000 * header)
                writer.writerow([rel, 10 + i % 5, 8, 64, 70, marks, i % 7, 0.1, -0.1])
    return f"affectnet:{root}"


def content(folder: Path) -> tuple[dict, dict]:
    """Every split's rows (image bytes undecoded) and the manifest without its time stamp."""
    splits = load_from_disk(str(folder))
    rows = {name: ds.cast_column("image", DsImage(decode=False)).to_dict() for name, ds in splits.items()}
    manifest = json.loads((folder / "sspa_prepare.json").read_text())
    manifest.pop("created")
    return rows, manifest


def partials(folder: Path) -> list[Path]:
    return sorted(folder.parent.glob(f".{folder.name}.partial-*"))


@pytest.fixture
def counted(monkeypatch):
    """Tiny shards, and the per-row face work counted (and made to fail at row `fail_at`, when set)."""
    monkeypatch.setattr(shards_module, "SHARD_ROWS", SHARD)
    calls = {"rows": 0, "fail_at": None}
    real = prepare_module.face_from

    def face_from(*args, **kwargs):
        calls["rows"] += 1
        if calls["rows"] == calls["fail_at"]:
            raise KeyboardInterrupt  # what a Ctrl-C in the middle of the work raises
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare_module, "face_from", face_from)
    return calls


def test_interrupted_prepare_resumes_with_the_missing_shards_only_and_ends_identical(tmp_path, counted, caplog):
    caplog.set_level(logging.INFO, logger="sspa_hf.data")
    spec = build_affectnet(tmp_path / "raw")
    options = PrepareOptions(image_size=48, num_proc=1)
    prepare_source(spec, tmp_path / "whole", options)
    assert counted["rows"] == TRAIN + VALIDATION and not partials(tmp_path / "whole")

    out = tmp_path / "out"
    counted.update(rows=0, fail_at=5 * SHARD + 2)  # in the train split's 6th shard
    with pytest.raises(KeyboardInterrupt):
        prepare_source(spec, out, options)
    (left,) = partials(out)
    assert shards_module.count_shards(left) == 5 and not out.exists()
    assert not (left / ".sspa-train.lock").exists()  # released: the folder is free to take over

    counted.update(rows=0, fail_at=None)
    result = prepare_source(spec, out, options)
    assert not result.reused and counted["rows"] == TRAIN + VALIDATION - 5 * SHARD
    assert "5 of 7 shards done by an earlier run" in caplog.text
    assert content(out) == content(tmp_path / "whole")
    assert not partials(out) and sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "whole").iterdir()
    )


def test_two_processes_write_the_same_shards_as_one(tmp_path, counted):
    spec = build_affectnet(tmp_path / "raw")
    prepare_source(spec, tmp_path / "one", PrepareOptions(image_size=48, num_proc=1))
    counted["rows"] = 0
    prepare_source(spec, tmp_path / "two", PrepareOptions(image_size=48, num_proc=2))
    assert counted["rows"] == 0  # the face work ran in the worker processes
    assert content(tmp_path / "two") == content(tmp_path / "one")


KILLABLE = """
import sys, time
import sspa_hf.data.prepare as prepare_module, sspa_hf.data.shards as shards_module
from sspa_hf.data import PrepareOptions, prepare_source
shards_module.SHARD_ROWS = {shard}
real = prepare_module.face_from
def slow(*args, **kwargs):
    time.sleep(0.05)
    return real(*args, **kwargs)
prepare_module.face_from = slow
prepare_source(sys.argv[1], sys.argv[2], PrepareOptions(image_size=48, num_proc=1))
"""


@pytest.mark.slow
def test_prepare_killed_with_sigkill_resumes(tmp_path, counted):
    spec = build_affectnet(tmp_path / "raw")
    prepare_source(spec, tmp_path / "whole", PrepareOptions(image_size=48, num_proc=1))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent.parent), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE.format(shard=SHARD), spec, str(out)], env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        found = partials(out)
        if found and shards_module.count_shards(found[0]) >= 3:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the prepare ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    (left,) = partials(out)
    done = shards_module.count_shards(left)
    assert 3 <= done < 7 and (left / ".sspa-train.lock").exists()  # a SIGKILL releases nothing

    counted["rows"] = 0
    prepare_source(spec, out, PrepareOptions(image_size=48, num_proc=1))
    assert counted["rows"] == TRAIN + VALIDATION - done * SHARD
    assert content(out) == content(tmp_path / "whole") and not partials(out)


def test_partial_folder_of_other_options_is_removed_and_a_live_one_refused(tmp_path, capsys, caplog):
    spec = build_affectnet(tmp_path / "raw")
    out = tmp_path / "out"
    other = shards_module.partial_folder(out, 2**22 + 1)
    (other / "work" / "train").mkdir(parents=True)
    (other / "work" / "train" / "000000.arrow").write_bytes(b"not this fingerprint's")
    (other / "partial.json").write_text(json.dumps({"fingerprint": "0" * 64, "shard_rows": SHARD}))
    prepare_source(spec, out, PrepareOptions(image_size=32, num_proc=1))
    assert not other.exists() and not partials(out) and f"removed {other}" in caplog.text

    live = shards_module.partial_folder(tmp_path / "again", 2**22 + 2)
    lock = RunLock(live).acquire()  # a live prepare: it holds the OS lock
    try:
        with pytest.raises(UserInputError, match=f"another sspa-prepare \\(PID {os.getpid()} on"):
            prepare_source(spec, tmp_path / "again", PrepareOptions(image_size=32, num_proc=1))
        capsys.readouterr()
        assert main([spec, str(tmp_path / "again"), "-q"]) == 2
        assert sorted(p.name for p in live.iterdir()) == [LOCK] and not (tmp_path / "again").exists()
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"PID {os.getpid()}" in err
