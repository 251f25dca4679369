"""`errors.first_line`: a library's exception as one line, and the places that quote one."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import pytest

from sspa_hf.data import load_source
from sspa_hf.errors import UserInputError, first_line
from sspa_hf.run.guard import RunStatus


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("one line"), "one line"),
        (ValueError("\n  \n  first  \nsecond\n"), "first"),
        (OSError("repo not found\nTraceback (most recent call last):\n  ..."), "repo not found"),
        (ValueError(""), "ValueError"),
        (RuntimeError("   \n\t\n"), "RuntimeError"),
        (KeyError(), "KeyError"),
        (_BrokenStr(), "_BrokenStr"),
    ],
)
def test_first_line(exc: BaseException, expected: str) -> None:
    assert first_line(exc) == expected


def test_hf_reader_quotes_an_empty_library_error_by_its_class(monkeypatch) -> None:
    """A `datasets.load_dataset` failure with no message is still one line (it was an IndexError)."""

    def fail(name: str, *args, **kwargs):
        raise ConnectionError("")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(UserInputError, match=r"cannot load dataset 'nobody/nothing': ConnectionError$"):
        load_source("hf:nobody/nothing")


def test_hf_reader_quotes_the_first_line(monkeypatch) -> None:
    def fail(name: str, *args, **kwargs):
        raise FileNotFoundError("\nDataset 'nobody/nothing' doesn't exist on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(UserInputError, match=r"cannot load dataset 'nobody/nothing': Dataset 'nobody/nothing' doesn't"):
        load_source("hf:nobody/nothing")


def test_run_status_records_the_first_line_of_a_failure(tmp_path) -> None:
    status = RunStatus(tmp_path, enabled=True)
    status.write("failed", ValueError("bad value\nTraceback ..."))
    assert json.loads((tmp_path / "run_status.json").read_text())["error"] == "ValueError: bad value"
    status.write("failed", ValueError(""))
    assert json.loads((tmp_path / "run_status.json").read_text())["error"] == "ValueError"
    status.write("interrupted", KeyboardInterrupt("SIGTERM"))
    assert json.loads((tmp_path / "run_status.json").read_text())["error"] == "SIGTERM"


def test_a_python_warning_inside_a_command_is_one_line():
    """`warnings` prints the warning and its source line under it; a command prints `PROG: warning: ...` alone."""
    code = (
        "import sys, warnings\n"
        "from sspa_hf.commands import run_command\n"
        "def body():\n"
        "    warnings.warn('imagefolder train: no samples of class fear', UserWarning)\n"
        "    return 0\n"
        "sys.exit(run_command('sspa-x', body))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "sspa-x: warning: imagefolder train: no samples of class fear\n"
