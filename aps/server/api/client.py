"""What the gateway knows of a client's request without a model: its size, and whether the
client is still there."""
from __future__ import annotations

from fastapi import Request as HttpRequest


def count_tokens(text: str) -> int:
    """Prompt tokens without a tokenizer: about 4 characters a token for English text
    (OpenAI's rule of thumb). The simulated engine only needs the count."""
    return max(1, round(len(text) / 4))


async def disconnected(http: HttpRequest) -> None:
    """Returns when the client has gone away."""
    while (await http.receive())["type"] != "http.disconnect":
        pass
