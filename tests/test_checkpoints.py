"""Issue 18: checkpoints that survive a kill mid-write, and finished runs that are never overwritten.

One real tiny run (a checkpoint at every step) is made once; each test works on a copy of it, torn or changed
the way a kill, a full disk or a second writer would leave it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import CHECKPOINT_EVERY_STEP

from sspa_hf.commands.train import main
from sspa_hf.run.checkpoints import checkpoint_problem, latest_complete_checkpoint, signals_deferred, terminate
from sspa_hf.run.guard import LOCK, RunLock, lock_holder

# 80 samples, 4 steps per epoch, 2 epochs: checkpoint-6, -7 and -8 are kept
FLAGS = [*CHECKPOINT_EVERY_STEP, "--save_total_limit", "3"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*FLAGS, "--output_dir", str(out)]) == 0
    return out


@pytest.fixture()
def unfinished(finished, tmp_path) -> Path:
    """The finished run as a run killed after its last checkpoint: no final model, status 'interrupted'."""
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    status = json.loads((out / "run_status.json").read_text())
    (out / "run_status.json").write_text(json.dumps({**status, "status": "interrupted"}))
    for name in ("model.safetensors", "config.json", "README.md"):
        (out / name).unlink()
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


TEARS = {
    "torn model.safetensors": (lambda c: _truncate(c / "model.safetensors"), "model.safetensors is truncated"),
    "no trainer_state.json": (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json missing"),
    "torn optimizer.pt": (lambda c: _truncate(c / "optimizer.pt"), "optimizer.pt is truncated"),
    "empty folder": (lambda c: [p.unlink() for p in c.iterdir()], "empty folder"),
    "no selection state": (
        lambda c: (c / "selection_state.safetensors").unlink(),
        "selection_state.safetensors missing",
    ),
}


@pytest.mark.parametrize("kind", TEARS, ids=lambda k: k.replace(" ", "_"))
def test_resume_skips_a_torn_newest_checkpoint_and_says_why(unfinished, kind, capsys):
    tear, reason = TEARS[kind]
    tear(unfinished / "checkpoint-8")
    assert reason in checkpoint_problem(unfinished / "checkpoint-8")
    chosen, skipped = latest_complete_checkpoint(unfinished)
    assert chosen == unfinished / "checkpoint-7" and [p.name for p, _ in skipped] == ["checkpoint-8"]
    if kind != "torn model.safetensors":
        return  # one real resume is enough; the choice above is what differs
    assert main([*FLAGS, "--output_dir", str(unfinished), "--resume_from_checkpoint", "true"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "resuming from" in x)
    assert "checkpoint-7" in line and "skipped checkpoint-8: model.safetensors is truncated" in line
    status = json.loads((unfinished / "run_status.json").read_text())
    assert status["status"] == "complete" and status["resumed_from"].endswith("checkpoint-7")


@pytest.mark.parametrize("name", ["model.safetensors", "selection_state.safetensors"])
def test_a_safetensors_file_cut_anywhere_is_torn(finished, tmp_path, name):
    """Cut inside the header's length, the header, the data, and one byte short: each is refused by name."""
    checkpoint = tmp_path / "checkpoint-8"
    shutil.copytree(finished / "checkpoint-8", checkpoint)
    whole = (checkpoint / name).read_bytes()
    header_end = 8 + int.from_bytes(whole[:8], "little")
    assert checkpoint_problem(checkpoint) is None
    for cut in (0, 4, header_end // 2, header_end, (header_end + len(whole)) // 2, len(whole) - 1):
        (checkpoint / name).write_bytes(whole[:cut])
        assert f"{name} is truncated" in checkpoint_problem(checkpoint), cut


def test_with_every_checkpoint_torn_the_resume_is_one_line_that_lists_them(unfinished, capsys):
    for folder in unfinished.glob("checkpoint-*"):
        (folder / "trainer_state.json").unlink()
    before = _tree_digest(unfinished)
    assert main([*FLAGS, "--output_dir", str(unfinished), "--resume_from_checkpoint", "true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none complete" in err and "checkpoint-6: trainer_state.json missing" in err
    assert _tree_digest(unfinished) == before


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_a_complete_run_is_never_overwritten_and_a_refusal_writes_nothing(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = _tree_digest(out)
    assert main([*FLAGS, "--output_dir", str(out)]) == 2
    assert "holds a complete run" in capsys.readouterr().err
    other = ["--target_dataset", "synthetic:?role=target&n=50", "--resume_from_checkpoint", "true"]
    assert main([*FLAGS, "--output_dir", str(out), *other]) == 2  # a mistaken resume with other data
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "complete run" in err
    assert _tree_digest(out) == before


def test_a_resume_on_other_data_is_refused_before_anything_is_written(unfinished, capsys):
    before = _tree_digest(unfinished)
    flags = [*FLAGS, "--output_dir", str(unfinished), "--resume_from_checkpoint", "true"]
    assert main([*flags, "--target_dataset", "synthetic:?role=target&n=50"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--target_dataset" in err and "data_args.json" in err
    assert _tree_digest(unfinished) == before


def test_an_unfinished_run_is_not_started_over_without_overwrite(unfinished, capsys):
    before = _tree_digest(unfinished)
    assert main([*FLAGS, "--output_dir", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert "unfinished run" in err and "checkpoint-8" in err and "--overwrite_output_dir" in err
    assert _tree_digest(unfinished) == before


def test_overwrite_output_dir_replaces_the_run_and_its_checkpoints(unfinished):
    (unfinished / "checkpoint-99").mkdir()  # from the old run: a later resume must not take it
    flags = [*FLAGS, "--output_dir", str(unfinished), "--overwrite_output_dir", "true", "--save_strategy", "no"]
    assert main(flags) == 0
    assert not list(unfinished.glob("checkpoint-*"))
    assert json.loads((unfinished / "run_status.json").read_text())["status"] == "complete"


def test_a_folder_in_use_by_a_live_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    lock = RunLock(out).acquire()  # a live writer: it holds the OS lock
    try:
        assert main([*FLAGS, "--output_dir", str(out), "--overwrite_output_dir", "true"]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert f"in use by a training run (PID {os.getpid()}" in err
    assert not list(out.iterdir())


def test_a_lock_whose_process_is_gone_is_stale_and_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    assert lock_holder(tmp_path) is None
    lock = RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK).exists()


def test_run_status_names_pid_host_and_heartbeat(finished):
    status = json.loads((finished / "run_status.json").read_text())
    assert status["host"] == socket.gethostname() and status["pid"] > 0 and status["heartbeat"]
    assert not (finished / LOCK).exists()  # released at the end


def test_sigterm_inside_the_shield_waits_for_its_end():
    previous = signal.signal(signal.SIGTERM, terminate)
    reached = False
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"), signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            reached = True  # the save goes on
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert reached


def _run_patched(out: Path, method: str, before: str) -> subprocess.CompletedProcess:
    """Run the tiny training in a fresh process whose `Trainer.<method>(output_dir)` first runs `before`."""
    script = PATCHED.format(method=method, before=textwrap.indent(textwrap.dedent(before), "    "))
    flags = [*FLAGS, "--output_dir", str(out)]
    return subprocess.run([sys.executable, "-c", script, *flags], capture_output=True, text=True, timeout=600)


PATCHED = """
import errno, os, signal, sys
from transformers import Trainer
import sspa_hf.commands.train as train_command

original = Trainer.{method}
def patched(self, output_dir):
{before}
    original(self, output_dir)
Trainer.{method} = patched
sys.exit(train_command.main(sys.argv[1:]))
"""


def test_sigterm_during_a_save_lets_it_finish_then_stops(tmp_path):
    out = tmp_path / "run"
    before = """
    if self.state.global_step == 2:
        os.kill(os.getpid(), signal.SIGTERM)  # in the middle of checkpoint-2
    """
    result = _run_patched(out, "_save_rng_state", before)
    assert result.returncode == 143, result.stderr[-3000:]  # 128 + SIGTERM, what schedulers expect
    assert checkpoint_problem(out / "checkpoint-2") is None
    assert not (out / "checkpoint-3").exists()
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "interrupted" and status["last_checkpoint"] == str(out / "checkpoint-2")


def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_torn_checkpoint(tmp_path):
    out = tmp_path / "run"
    before = """
    if self.state.global_step == 3:
        open(output_dir + "/optimizer.pt", "wb").write(b"PK")
        raise OSError(errno.ENOSPC, "No space left on device")
    """
    result = _run_patched(out, "_save_optimizer_and_scheduler", before)
    assert result.returncode == 2, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert "no space left on device" in line and "MB free" in line and str(out / "checkpoint-3") in line
    assert "checkpoint-2" in line  # the last complete one
    assert not (out / "checkpoint-3").exists() and not (out / ".saving").exists()
    assert checkpoint_problem(out / "checkpoint-2") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line_before_training(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main([*FLAGS, "--output_dir", str(parent / "run")]) == 2
    finally:
        parent.chmod(0o755)
    assert "is not writable" in capsys.readouterr().err
