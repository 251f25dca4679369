"""Errors caused by user input: commands print their message as one line and exit with status 2; and the stop a
signal asks for (exit status 128 + its number)."""

import signal


class UserInputError(ValueError):
    """Bad user input (a path, a file's content, a config value); the message names the culprit."""


class Terminated(KeyboardInterrupt):
    """A stop asked by a signal (a scheduler's SIGTERM): it ends a command like Ctrl-C, with exit status 128 + the
    signal's number (143 for SIGTERM), which is what schedulers expect."""

    def __init__(self, signum: int, detail: str = "") -> None:
        self.signum, self.detail = signum, detail
        super().__init__(f"terminated by {signal.Signals(signum).name}{detail}")

    def __reduce__(self) -> tuple:  # pickled (to another process) with its own arguments, not the message
        return type(self), (self.signum, self.detail)


def first_line(exc: BaseException) -> str:
    """The first non-blank line of `str(exc)`, else the exception's class name: a library's error in one line.

    Never raises (an empty message, or a `__str__` that itself fails, gives the class name).
    """
    try:
        text = str(exc)
    except Exception:
        text = ""
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
