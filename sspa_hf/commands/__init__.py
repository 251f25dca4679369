"""Console scripts: sspa-train, sspa-eval, sspa-predict, sspa-prepare, sspa-export-selection, sspa-export-onnx."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

from ..errors import Terminated, UserInputError, first_line


class CommandParser(argparse.ArgumentParser):
    """argparse for the commands: a mistake on the command line is one line (`PROG: error: ...`, exit 2) without
    argparse's usage block, and an abbreviated flag is refused as an unknown one, not taken for the flag it starts."""

    def __init__(self, **kwargs) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def snake_case_flags(argv: Sequence[str] | None = None) -> list[str]:
    """The command line (default sys.argv[1:]) with each long option's name in snake_case: `--top-k 3` and
    `--top_k=3` both reach argparse as `--top_k`, the spelling --help shows (HfArgumentParser, behind sspa-train,
    accepts both too). Values, and everything after `--`, are left as they are."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith("--") and not arg.startswith("---"):
            name, eq, value = arg.partition("=")
            args[i] = "--" + name[2:].replace("-", "_") + eq + value
    return args


def run_command(name: str, body: Callable[[], int], sigterm: str | None = None) -> int:
    """Run a command body; a user mistake becomes one line on stderr and exit status 2, not a traceback; Ctrl-C
    exits 130, a SIGTERM 143 (128 + the signal), each with one line.

    `sigterm`: what a SIGTERM means until the body installs its own handler (it is installed first, before the
    body's imports), e.g. that nothing was started yet."""
    previous = None
    format_warning, warnings.formatwarning = warnings.formatwarning, _one_line_warning(name)
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: _stop(signum, sigterm))
    try:
        return body()
    except UserInputError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{name}: {first_line(exc) if isinstance(exc, Terminated) else 'interrupted'}", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    finally:
        warnings.formatwarning = format_warning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _one_line_warning(name: str) -> Callable[..., str]:
    """A Python warning printed by a command: `PROG: warning: ...` on one line, without the source line that
    `warnings` prints under it (which tells a user nothing)."""
    return lambda message, category, filename, lineno, line=None: f"{name}: warning: {message}\n"


def _stop(signum: int, detail: str) -> None:
    """The SIGTERM handler `run_command` installs: the stop, with what it means at this point."""
    raise Terminated(signum, f" {detail}")
