"""Request bodies. Unknown fields are accepted: real clients send many (`ignore_eos`, `user`, ...).

Integers and booleans are strict: `"max_tokens": true` or `"stream": "yes"` is a 400, not a
guess. Floats (temperature, top_p, ...) pass through to the engine as sent."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TOKENS = 2**31 - 1  # tokens one request may ask for: far beyond any model's context


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InferBody(_Open):
    """The seeds' API."""
    tenant_id: str | None = None
    prompt: str
    tokens_requested: int = Field(128, ge=1, le=MAX_TOKENS, strict=True)
    priority_bid: int | None = Field(None, ge=1, le=10, strict=True)  # above the tenant's
    model: str | None = None                                         # max_bid: lowered to it


class GenerateBody(_Open):
    """Seed 004's API: a prompt, decoded greedily, so its answer may come from the cache."""
    prompt: str
    max_tokens: int = Field(128, ge=1, le=MAX_TOKENS, strict=True)
    model: str | None = None


class StreamOptions(_Open):
    include_usage: bool = Field(False, strict=True)


class _Generation(_Open):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, strict=True)
    stream: bool = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    priority: int | None = Field(None, ge=1, le=10, strict=True)  # APS bid: higher goes first
    n: int | None = Field(None, ge=1, strict=True,
                          description="choices to generate: only 1 is supported")

    def limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionBody(_Generation):
    prompt: str | list[str]


class ChatMessage(_Open):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return " ".join(str(p.get("text", "")) for p in self.content if isinstance(p, dict))
        return self.content or ""


class ChatBody(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
