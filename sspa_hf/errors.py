"""Errors caused by user input: commands print their message as one line and exit with status 2."""


class UserInputError(ValueError):
    """Bad user input (a path, a file's content, a config value); the message names the culprit."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of `str(exc)`, else the exception's class name: a library's error in one line.

    Never raises (an empty message, or a `__str__` that itself fails, gives the class name).
    """
    try:
        text = str(exc)
    except Exception:
        text = ""
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
