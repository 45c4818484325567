"""Request bodies. Unknown fields are accepted: real clients send many (`ignore_eos`, `n`, ...)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InferBody(_Open):
    """The seeds' API."""
    tenant_id: str | None = None
    prompt: str
    tokens_requested: int = Field(128, ge=1)
    priority_bid: int | None = Field(None, ge=1, le=10)


class StreamOptions(_Open):
    include_usage: bool = False


class _Generation(_Open):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    priority: int | None = Field(None, ge=1, le=10)  # APS bid: higher is served first

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
