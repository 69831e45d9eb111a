"""Whether the Hugging Face hub can be reached, asked once per process with a short timeout: without a network the
hub clients retry for about 25 s before they fail."""

from __future__ import annotations

import functools
import socket
from urllib.parse import urlparse

TIMEOUT_S = 1.5


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (offline mode, or no connection within TIMEOUT_S), else None."""
    # Imported here for start-up speed (huggingface_hub).
    from huggingface_hub.constants import ENDPOINT, HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), TIMEOUT_S).close()
    except OSError as e:
        return f"cannot reach {url.hostname} ({e.strerror or e})"
    return None
