"""Issue 33: a resume never needs a person. The run lock is an OS lock that dies with its process, so a run killed
while it was PID 1 of its container is not its own lock holder when the next container (PID 1 again, same host
name) resumes it, while a live writer still refuses a second one; a SIGTERM exits 143, with one line, however early.

PID 1 of a container is played by `unshare --pid --fork --mount-proc` (a fresh PID namespace, the host name kept);
those tests are skipped, with the reason, where namespaces cannot be made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import CHECKPOINT_EVERY_STEP, QUICKSTART, TINY_FLAGS

from sspa_hf.commands import run_command
from sspa_hf.errors import Terminated, UserInputError
from sspa_hf.run.guard import LOCK, RunLock, check_output_dir, lock_holder

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]

# A minimal writer: takes the run guard as sspa-train does, says its PID (1 in a fresh namespace), then waits.
HOLD = """
import os, sys, time
from pathlib import Path
from sspa_hf.run.guard import RunLock, RunStatus
out = Path(sys.argv[1])
RunLock(out).acquire()
RunStatus(out, enabled=True).write("running")
print(os.getpid(), flush=True)
time.sleep(600)
"""

# A second writer: takes the guard and ends (exit 0), or is refused in one line (exit 2).
TAKE = """
import os, sys
from pathlib import Path
from sspa_hf.commands import run_command
from sspa_hf.run.guard import RunLock
out = Path(sys.argv[1])
def take():
    lock = RunLock(out).acquire()
    print(os.getpid(), (out / ".sspa-train.lock").read_text())
    lock.release()
    return 0
sys.exit(run_command("take", take))
"""


@pytest.fixture(scope="module")
def pid_namespace() -> None:
    """Skip, saying why, where `unshare --pid` cannot run (not installed, not permitted for this user)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: PID namespaces cannot be made here")
    result = subprocess.run([*UNSHARE, "sh", "-c", "echo $$"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or result.stdout.strip() != "1":
        pytest.skip(f"unshare --pid is not permitted here: {(result.stderr.strip() or result.stdout.strip())[:200]}")


def _start_as_pid_1(log: Path, script: str, *args: str) -> subprocess.Popen:
    """`python -c script args` as PID 1 of a fresh PID namespace; its stdout piped, its stderr into `log`."""
    with log.open("w") as stderr:
        return subprocess.Popen(
            [*UNSHARE, sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=stderr, text=True
        )


def _namespace_init(unshare: subprocess.Popen) -> int:
    """The host PID of the process `unshare --fork` started (PID 1 in its namespace): its only child."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == unshare.pid:
            children.append(int(stat.parent.name))
    assert len(children) == 1, children
    return children[0]


def _hold_as_pid_1(out: Path) -> subprocess.Popen:
    log = out.with_name("holder.log")
    holder = _start_as_pid_1(log, HOLD, str(out))
    line = holder.stdout.readline().strip()
    assert line == "1", f"the holder did not start as PID 1: {line!r} {log.read_text()[-2000:]}"
    return holder


def _kill(unshare: subprocess.Popen) -> None:
    os.kill(_namespace_init(unshare), signal.SIGKILL)
    unshare.wait(timeout=60)


def _take_as_pid_1(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*UNSHARE, sys.executable, "-c", TAKE, str(out)], capture_output=True, text=True, timeout=300)


def test_a_lock_left_by_pid_1_of_a_killed_container_is_taken_by_the_next_pid_1(pid_namespace, tmp_path):
    out = tmp_path / "run"
    holder = _hold_as_pid_1(out)
    _kill(holder)
    left = json.loads((out / LOCK).read_text())
    assert left["pid"] == 1 and left["host"] == socket.gethostname()  # PID 1 is alive here too (this host's init)

    assert lock_holder(out) is None
    check_output_dir(out, resume=False, overwrite=True, data_record={})  # --overwrite_output_dir is not refused
    taken = _take_as_pid_1(out)
    assert taken.returncode == 0, taken.stderr[-3000:]
    pid, record = taken.stdout.split(" ", 1)
    assert pid == "1" and json.loads(record)["pid"] == 1 and json.loads(record)["started"] != left["started"]


def test_a_live_pid_1_still_refuses_a_second_pid_1_on_the_same_host(pid_namespace, tmp_path):
    out = tmp_path / "run"
    holder = _hold_as_pid_1(out)
    try:
        refused = _take_as_pid_1(out)
        assert refused.returncode == 2, refused.stderr[-3000:]
        (line,) = refused.stderr.strip().splitlines()
        assert f"in use by a training run (PID 1 on {socket.gethostname()}" in line and "wait for it to end" in line
        assert "delete" not in line  # the OS lock tells: no advice to remove it by hand
        with pytest.raises(UserInputError, match="in use by a training run"):
            check_output_dir(out, resume=True, overwrite=True, data_record={})
    finally:
        _kill(holder)
    assert _take_as_pid_1(out).returncode == 0


def test_a_lock_naming_a_live_pid_that_no_process_holds_is_stale(tmp_path, capsys):
    """A reused PID (here: this very process's) does not make a dead run's lock live."""
    lock = RunLock(tmp_path).acquire()
    left = (tmp_path / LOCK).read_text()
    lock.release()
    (tmp_path / LOCK).write_text(left)  # as a SIGKILL leaves it
    assert json.loads(left)["pid"] == os.getpid()
    assert lock_holder(tmp_path) is None
    RunLock(tmp_path).acquire().release()


def test_a_live_holder_refuses_a_second_writer_in_the_same_process(tmp_path):
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        with pytest.raises(UserInputError, match=f"in use by a training run \\(PID {os.getpid()} on"):
            RunLock(tmp_path).acquire()
    finally:
        lock.release()
    assert not (tmp_path / LOCK).exists() and lock_holder(tmp_path) is None


def test_without_os_locks_the_pid_and_heartbeat_decide_and_the_refusal_says_what_ends_it(tmp_path, monkeypatch):
    """A filesystem with no OS locks (flock fails) keeps the older rules, and the refusal says what to do."""
    import sspa_hf.run.guard as run_guard

    monkeypatch.setattr(run_guard, "fcntl", None)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": "then"}
    (tmp_path / LOCK).write_text(json.dumps(mine))
    with pytest.raises(UserInputError, match=f"only the PID tells: if PID {os.getpid()} is no training run") as refusal:
        RunLock(tmp_path).acquire()
    assert f"delete {tmp_path / LOCK}" in str(refusal.value)

    elsewhere = {"pid": 1, "host": f"not-{socket.gethostname()}", "started": "then"}
    (tmp_path / LOCK).write_text(json.dumps(elsewhere))
    (tmp_path / "run_status.json").write_text(json.dumps({"status": "running", "heartbeat_unix": time.time()}))
    with pytest.raises(UserInputError, match="heartbeat is 0 s old: a run on another host counts as ended 5 minutes"):
        RunLock(tmp_path).acquire()
    (tmp_path / "run_status.json").write_text(json.dumps({"status": "running", "heartbeat_unix": time.time() - 301}))
    RunLock(tmp_path).acquire().release()


def test_a_forked_worker_that_outlives_a_killed_run_does_not_hold_its_lock(tmp_path):
    """Data-loader and pool workers are forked while the lock is held; one left behind must not lock the folder."""
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from sspa_hf.run.guard import RunLock
        RunLock(Path(sys.argv[1])).acquire()
        child = os.fork()
        if child == 0:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1), os.dup2(devnull, 2)  # the test reads the parent's output to its end
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        os._exit(0)  # killed: nothing released
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    worker = int(result.stdout.strip())
    try:
        os.kill(worker, 0)  # still running
        assert lock_holder(tmp_path) is None
    finally:
        os.kill(worker, signal.SIGKILL)


def test_sigterm_exits_143_and_ctrl_c_130_each_with_one_line(capsys):
    def body(exc: BaseException):
        def run() -> int:
            raise exc

        return run

    assert run_command("sspa-x", body(Terminated(signal.SIGTERM))) == 143
    assert capsys.readouterr().err == "sspa-x: terminated by SIGTERM\n"
    assert run_command("sspa-x", body(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "sspa-x: interrupted\n"


EARLY = """
import importlib.abc, os, signal, sys
import sspa_hf.commands.train as train_command

class SigtermOnFirstImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        sys.meta_path.remove(self)
        os.kill(os.getpid(), signal.SIGTERM)  # while the command is still importing what it needs
        return None

sys.meta_path.insert(0, SigtermOnFirstImport())
sys.exit(train_command.main(sys.argv[1:]))
"""


def test_sigterm_while_the_command_still_imports_says_so_in_one_line_and_exits_143(tmp_path):
    out = tmp_path / "run"
    flags = [QUICKSTART, *TINY_FLAGS, "--output_dir", str(out)]
    result = subprocess.run([sys.executable, "-c", EARLY, *flags], capture_output=True, text=True, timeout=300)
    assert result.returncode == 143, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sspa-train: terminated by SIGTERM before training started") and "run the same" in line
    assert not out.exists()


# The tiny training of test_checkpoints (a checkpoint at every step); at step 3 it says so and waits to be killed.
RUN_UNTIL_KILLED = """
import sys, time
from transformers import Trainer
import sspa_hf.commands.train as train_command

original = Trainer.training_step
def training_step(self, *args, **kwargs):
    if self.state.global_step == 3:  # checkpoint-3 is complete
        print("checkpoint-3", flush=True)
        time.sleep(600)
    return original(self, *args, **kwargs)
Trainer.training_step = training_step
sys.exit(train_command.main(sys.argv[1:]))
"""
FLAGS = [*CHECKPOINT_EVERY_STEP]


@pytest.mark.slow
def test_a_training_killed_as_pid_1_resumes_as_pid_1_of_a_fresh_namespace(pid_namespace, tmp_path):
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    first = _start_as_pid_1(log, RUN_UNTIL_KILLED, *FLAGS, "--output_dir", str(out))
    deadline = time.monotonic() + 300
    while first.stdout.readline().strip() != "checkpoint-3":
        assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
    _kill(first)
    assert json.loads((out / LOCK).read_text())["pid"] == 1

    again = [*UNSHARE, sys.executable, "-m", "sspa_hf.commands.train", *FLAGS, "--output_dir", str(out)]
    resumed = subprocess.run([*again, "--resume_from_checkpoint", "true"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    status = json.loads((out / "run_status.json").read_text())
    assert status["status"] == "complete" and status["resumed_from"] == str(out / "checkpoint-3")
    assert not (out / LOCK).exists()
