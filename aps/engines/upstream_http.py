"""One request to an OpenAI-compatible server: the body sent, the answer read as chunks.

A streaming client is streamed from the server (`stream: true` with `include_usage`): tokens
are pushed to the client as they come, the scheduler's fair-share counters move as they come,
and the final `usage` chunk gives the server's own token counts for billing. A client that
waits for the whole answer gets it from one plain request: one chunk with the text and usage.
(Streaming every token costs the server 10-15% of its throughput on a small CPU machine, for
nothing such a client would see.)

Errors, one class: `UpstreamError(status, message, retryable)`. A connection failure, a 5xx or
a 429 is retryable (elsewhere, before the first token); a 4xx is the client's (a prompt too
long for the server, a bad parameter) and is passed on, not retried.

The HTTP client is aiohttp: on this path it costs a fifth of httpx's CPU per request (0.23 ms
against 1.3 ms not streamed, 0.5 against 2.0 ms streamed, 8 tokens; docs/upstreams.md). The
answer is read as it arrives and cut into SSE lines here; each event is decoded once, for the
text, finish reason and usage the scheduler needs.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp

# Fields the gateway sets itself for each replica; the client's are not forwarded.
_REPLACED = frozenset({"model", "stream", "stream_options", "priority", "max_tokens",
                       "max_completion_tokens"})
# What the gateway holds in memory of one answer. The upstream is the operator's own, but a
# broken one (a line that never ends, a body that never stops) must fail its request, not
# grow the gateway without bound. One SSE event with top-20 logprobs is about 2 KB; a whole
# answer of 32k tokens with them, about 32 MB; an error needs only its message.
MAX_LINE_BYTES = 1 << 20
MAX_ANSWER_BYTES = 64 << 20
_MAX_ERROR_BYTES = 64 << 10


@dataclass(slots=True)
class UpstreamCall:
    """What the client asked for: its body as received, which endpoint, and its prompt text
    (for prefix-affinity routing)."""

    chat: bool
    body: dict[str, Any]
    prompt: str = ""

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.chat else "/v1/completions"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(slots=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None


class UpstreamError(Exception):
    def __init__(self, status: int | None, message: str, retryable: bool):
        super().__init__(message)
        self.status, self.message, self.retryable = status, message, retryable

    @property
    def replica_fault(self) -> bool:
        """Whether it counts against the replica's breaker (a client's 4xx does not)."""
        return self.retryable


def vllm_priority(bid: int) -> int:
    """APS bids are 1..10, higher first; vLLM serves lower `priority` first: 10 -> 1, 1 -> 10."""
    return 11 - bid


def upstream_body(call: UpstreamCall, model: str, max_tokens: int, bid: int | None) -> dict:
    """The client's body with the replica's model name, the request's max_tokens (what the
    scheduler reserved for), a usage-reporting stream, and `priority` only when `bid` is given
    (the replica is configured to honour it)."""
    body = {k: v for k, v in call.body.items() if k not in _REPLACED}
    body.update(model=model, max_tokens=max_tokens, stream=bool(call.body.get("stream")))
    if body["stream"]:
        body["stream_options"] = {"include_usage": True}
    if bid is not None:
        body["priority"] = vllm_priority(bid)
    return body


def _client_fault(status: int) -> bool:
    """A 4xx says the request was bad, except a refused key (the gateway's configuration) and
    a rate limit (the server's load)."""
    return 400 <= status < 500 and status not in (401, 403, 408, 429)


def encode_body(body: dict) -> bytes:
    """The JSON sent upstream: compact and UTF-8; NaN is refused (no server reads it)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


async def stream_chunks(session: aiohttp.ClientSession, base_url: str, chat: bool, body: dict,
                        api_key: str | None = None,
                        timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[Chunk]:
    """`timeout` (else the session's): its `sock_read` bounds each wait for the next bytes, so
    a stalled server is given up on (a streamed request's gap between tokens, a plain one's
    whole answer)."""
    path = "/v1/chat/completions" if chat else "/v1/completions"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    extra = {} if timeout is None else {"timeout": timeout}
    try:
        async with session.post(base_url + path, data=encode_body(body), headers=headers,
                                **extra) as resp:
            if resp.status != 200:
                code, raw = resp.status, await _whole(resp.content, _MAX_ERROR_BYTES, cut=True)
                raise UpstreamError(code, _error_message(raw, code), not _client_fault(code))
            if not body["stream"]:
                yield _parse(await _whole(resp.content), chat, whole=True)
                return
            done = False
            async for data in _data_lines(resp.content):
                if data == b"[DONE]":
                    done = True  # read on to the end of the body: then the connection is
                    continue     # kept for the next request instead of being closed
                if not done:
                    yield _parse(data, chat)
            if done:
                return
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise UpstreamError(None, f"{type(exc).__name__}: {exc}", retryable=True) from None
    raise UpstreamError(None, "the stream ended without [DONE]", retryable=True)


async def _whole(content: aiohttp.StreamReader, limit: int | None = None,
                 cut: bool = False) -> bytes:
    """A body, however many pieces it comes in, up to `limit` (`MAX_ANSWER_BYTES`) bytes:
    past it, the first `limit` bytes (`cut`) or a failed answer. An answer that large is the
    client's doing (`max_tokens` with `logprobs`), not the replica's: it is not retried
    elsewhere and counts nothing against the replica's breaker."""
    limit = MAX_ANSWER_BYTES if limit is None else limit
    body = bytearray()
    async for piece in content.iter_any():
        body += piece
        if len(body) > limit:
            if cut:
                return bytes(body[:limit])
            raise _too_long("answer", limit, retryable=False)
    return bytes(body)


async def _data_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The payloads of an SSE body's `data:` lines, each as soon as its line is whole (the
    network cuts lines anywhere). Blank separators, comments and event names are skipped."""
    rest = b""
    async for piece in content.iter_any():
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()  # the start of a line still coming
        if len(rest) > MAX_LINE_BYTES:
            raise _too_long("stream line", MAX_LINE_BYTES)
        for line in lines:
            if len(line) > MAX_LINE_BYTES:  # whole in one read, or not: a broken server
                raise _too_long("stream line", MAX_LINE_BYTES)
            if line.startswith(b"data:"):
                yield line[5:].strip()
    if rest.startswith(b"data:"):  # a last line with no newline
        yield rest[5:].strip()


def _too_long(what: str, limit: int, retryable: bool = True) -> UpstreamError:
    return UpstreamError(None, f"the upstream's {what} is over {limit:,} bytes", retryable)


def _parse(data: bytes, chat: bool, whole: bool = False) -> Chunk:
    """One SSE chunk, or (`whole`) a complete non-streamed response. Whatever is not the JSON
    the OpenAI API sends (bytes that are not UTF-8, a list, a `usage` that is not a number) is
    a failed answer from that server, never an exception that would leave its request hanging."""
    try:
        return _chunk(json.loads(data), chat, whole)
    except (ValueError, TypeError, AttributeError):
        shown = data[:200].decode("utf-8", "replace")
        raise UpstreamError(None, f"malformed chunk: {shown!r}", retryable=True) from None


def _chunk(obj: dict, chat: bool, whole: bool) -> Chunk:
    if "error" in obj:  # a server that fails mid-stream says so in an event
        err = obj["error"]
        message = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        raise UpstreamError(None, f"error event: {message}", retryable=True)
    chunk = Chunk()
    usage = obj.get("usage")
    if usage:
        chunk.usage = Usage(int(usage.get("prompt_tokens") or 0),
                            int(usage.get("completion_tokens") or 0))
    choices = obj.get("choices") or []
    if choices:
        choice = choices[0]
        if chat:
            text = (choice.get("message" if whole else "delta") or {}).get("content")
        else:
            text = choice.get("text")
        chunk.text = text or ""
        chunk.finish_reason = choice.get("finish_reason")
    return chunk


def _error_message(raw: bytes, status: int) -> str:
    try:
        err = json.loads(raw).get("error") or json.loads(raw)
        message = err.get("message") if isinstance(err, dict) else str(err)
    except (ValueError, AttributeError):
        message = raw.decode("utf-8", "replace")[:500]
    return f"upstream answered {status}: {message or 'no message'}"


_CACHE_INFO = re.compile(r'^vllm:cache_config_info\{([^}]*)\}', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def read_capacity(metrics_text: str) -> int | None:
    """The KV cache's size in tokens from vLLM's Prometheus text (`vllm:cache_config_info`,
    labels `num_gpu_blocks` and `block_size`), or None when it is not there."""
    match = _CACHE_INFO.search(metrics_text)
    if match is None:
        return None
    labels = dict(_LABEL.findall(match.group(1)))
    try:
        return int(labels["num_gpu_blocks"]) * int(labels["block_size"])
    except (KeyError, ValueError):
        return None
