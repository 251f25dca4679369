"""Hub access checks made before any work: a model reference that is neither a folder nor reachable, a push that
cannot happen. Each becomes one line naming the argument, instead of minutes of retries and a traceback."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import UserInputError


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached now (None when it can): HF_HUB_OFFLINE, or no connection to its endpoint."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"{host} cannot be reached: {type(exc).__name__}"
    return None


def looks_local(name: str) -> bool:
    """A name that can only be a path: it exists, starts like one, or has more than one '/'."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1


def _cached_on_hub(repo_id: str) -> bool:
    """Whether the Hub cache already holds the repo's config (loads offline then)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id: not in the cache
        return False


def check_model_reference(name: str, what: str) -> None:
    """Refuse `name` (argument `what`) unless it is a model folder, a cached Hub repo, or the Hub can be reached."""
    path = Path(name).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise UserInputError(f"{what}: {name} is a file, not a model folder")
    if looks_local(name):
        raise UserInputError(f"{what}: no model folder {name}")
    if _cached_on_hub(name):
        return
    reason = hub_unreachable()
    if reason:
        raise UserInputError(f"{what}: no model folder {name} (and no Hub access: {reason})")


def push_problem(token: str | None = None) -> str | None:
    """Why a push to the Hub would fail now (None when it should work): no connection or no token."""
    from huggingface_hub import get_token

    reason = hub_unreachable()
    if reason:
        return f"the Hub cannot be reached ({reason})"
    if not (token or get_token()):
        return "no Hub token is set (run `hf auth login` or set HF_TOKEN)"
    return None
