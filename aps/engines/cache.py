"""An opt-in response cache for deterministic requests, scoped per tenant.

Only a request that asks for `temperature: 0` is cached (a missing temperature means the
server's default sampling, so not deterministic). The key is the tenant, the model and the
canonical JSON of the body without the fields that change how the answer is delivered, not
what it is (`stream`, `stream_options`) or when (`priority`). Entries expire after `ttl_s`;
the least recently used go first when the stored text passes `max_bytes`.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_DELIVERY = frozenset({"stream", "stream_options", "priority"})


@dataclass(slots=True, frozen=True)
class CachedResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    stored_at: float

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode()) + 64  # the text plus a rough cost of the entry itself


def cache_key(tenant: str, model: str, chat: bool, body: dict[str, Any]) -> str | None:
    """The key for a deterministic request, or None when it must not be cached."""
    temperature = body.get("temperature")
    if temperature is None or temperature != 0 or body.get("n", 1) != 1:
        return None
    content = {k: v for k, v in body.items() if k not in _DELIVERY}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return json.dumps([tenant, model, "chat" if chat else "completion", canonical])


class ResponseCache:
    def __init__(self, ttl_s: float = 300.0, max_bytes: int = 64 << 20):
        if ttl_s <= 0 or max_bytes <= 0:
            raise ValueError(f"cache ttl_s and max_bytes must be > 0: {ttl_s}, {max_bytes}")
        self.ttl_s, self.max_bytes = ttl_s, max_bytes
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self.num_bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str, now: float) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.stored_at >= self.ttl_s:
            self._drop(key)
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: str, entry: CachedResponse) -> None:
        if entry.num_bytes > self.max_bytes:
            return  # would evict everything and still not fit
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self.num_bytes += entry.num_bytes
        while self.num_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.evictions += 1

    def _drop(self, key: str) -> None:
        self.num_bytes -= self._entries.pop(key).num_bytes

    def __len__(self) -> int:
        return len(self._entries)
