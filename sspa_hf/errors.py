"""Errors caused by user input: commands print their message as one line and exit with status 2."""


class UserInputError(ValueError):
    """Bad user input (a path, a file's content, a config value); the message names the culprit."""
