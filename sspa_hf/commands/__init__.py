"""Console scripts: sspa-train, sspa-eval, sspa-predict, sspa-prepare, sspa-export-selection, sspa-export-onnx."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import UserInputError


def run_command(name: str, body: Callable[[], int]) -> int:
    """Run a command body; a user mistake becomes one line on stderr and exit status 2, not a traceback."""
    try:
        return body()
    except UserInputError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
