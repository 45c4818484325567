"""One request to a real HTTP server on 127.0.0.1 that answers what a broken upstream would:
the gateway holds a bounded part of any answer and fails the request past it."""
import asyncio

import aiohttp
import pytest
from aiohttp import web

from aps.engines import upstream_http
from aps.engines.upstream_http import UpstreamError, stream_chunks

EVENT = b'data: {"choices":[{"index":0,"text":"a","finish_reason":null}]}\n\n'


async def _serve(handler, call):
    """Run `call(url)` against a server whose every POST is answered by `handler`."""
    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            return await call(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _collect(handler, stream: bool):
    async def call(session, url):
        body = {"prompt": "hi", "max_tokens": 4, "stream": stream}
        return [c async for c in stream_chunks(session, url, False, body)]
    return asyncio.run(_serve(handler, call))


def _endless(first: bytes, piece: bytes):
    """A handler: 200, then `first`, then `piece` for ever (until the client hangs up)."""
    async def handler(request):
        return await _write_endless(request, first, piece)
    return handler


async def _write_endless(request, first: bytes, piece: bytes):
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(first)
    try:
        for _ in range(10_000):  # bounded: 10k pieces, far past any cap below
            await resp.write(piece)
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    return resp


@pytest.fixture
def small_caps(monkeypatch):
    monkeypatch.setattr(upstream_http, "MAX_LINE_BYTES", 64 << 10)
    monkeypatch.setattr(upstream_http, "MAX_ANSWER_BYTES", 256 << 10)


def test_a_stream_line_that_never_ends_fails_the_request(small_caps):
    with pytest.raises(UpstreamError, match="stream line is over 65,536 bytes") as err:
        _collect(_endless(EVENT + b"data: ", b"x" * 4096), stream=True)
    assert err.value.retryable and err.value.status is None  # the replica's fault: a 502


def test_a_stream_of_whole_lines_is_not_cut_by_the_line_cap(small_caps):
    """The cap is on one line: many short events add up to far more than it."""
    async def events(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(2_000):  # 2,000 x 64 B: twice the line cap
            await resp.write(EVENT)
        await resp.write(b"data: [DONE]\n\n")
        return resp
    chunks = _collect(events, stream=True)
    assert len(chunks) == 2_000 and "".join(c.text for c in chunks) == "a" * 2_000


def test_a_whole_line_over_the_cap_in_one_read_fails_too(small_caps):
    async def one_long_line(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + b"x" * (80 << 10) + b"\n\n" + EVENT)  # one write
        await resp.write(b"data: [DONE]\n\n")
        return resp
    with pytest.raises(UpstreamError, match="stream line is over 65,536 bytes"):
        _collect(one_long_line, stream=True)


def test_a_plain_answer_that_never_stops_fails_the_request(small_caps):
    """Its size is the client's doing (`max_tokens` with `logprobs`): not tried again on
    another replica, and nothing against this one's breaker."""
    with pytest.raises(UpstreamError, match="answer is over 262,144 bytes") as err:
        _collect(_endless(b'{"choices":[{"text":"', b"y" * 4096), stream=False)
    assert not err.value.retryable and not err.value.replica_fault


def test_an_error_answer_in_pieces_is_read_whole(small_caps):
    async def slow_error(request):
        resp = web.StreamResponse(status=400, headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"error": {"message"')
        await asyncio.sleep(0.05)
        await resp.write(b': "prompt too long"}}')
        return resp
    with pytest.raises(UpstreamError) as err:
        _collect(slow_error, stream=False)
    assert err.value.message == "upstream answered 400: prompt too long"


def test_an_error_answer_is_read_only_as_far_as_its_message(small_caps):
    async def huge_error(request):
        return web.Response(status=400, body=b'{"error":{"message":"' + b"z" * (1 << 20) + b'"}}')
    with pytest.raises(UpstreamError) as err:
        _collect(huge_error, stream=False)
    assert err.value.status == 400 and not err.value.retryable  # the client's fault, passed on
    assert err.value.message.startswith("upstream answered 400: {") and len(err.value.message) < 600
