"""What the gateway knows of a client's request without a model: its size, and whether the
client is still there."""
from __future__ import annotations

import math

from fastapi import Request as HttpRequest

from aps.server.errors import ApiError

MAX_QUEUE_HEADER = "X-APS-Max-Queue-Seconds"


def count_tokens(text: str) -> int:
    """Prompt tokens without a tokenizer: about 4 characters a token for English text
    (OpenAI's rule of thumb). The simulated engine only needs the count."""
    return max(1, round(len(text) / 4))


async def disconnected(http: HttpRequest) -> None:
    """Returns when the client has gone away."""
    while (await http.receive())["type"] != "http.disconnect":
        pass


def max_queue_s(header: str | None) -> float | None:
    """The client's limit on waiting to start, from `X-APS-Max-Queue-Seconds` (it can only
    shorten the tenant's own)."""
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1e9):
        raise ApiError(400, f"{MAX_QUEUE_HEADER} must be a number of seconds > 0, got {header!r}",
                       "invalid_request", param=MAX_QUEUE_HEADER)
    return value
