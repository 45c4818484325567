"""What a client sees through the gateway, byte for byte, from a scripted upstream.

The upstream is a small HTTP/1.1 server in this process that answers each prompt with a fixed
script of bytes, sent in awkward pieces (an event cut in two, two events in one write), so the
expected transcripts below pin what the gateway sends its client whatever the network does:
its events, its `usage`, its errors (mid-stream and before), and its ledger rows. Only the
request id and the `created` second vary between runs, and are masked.
"""
import asyncio
import json
import re
import sqlite3
import threading
import time

import httpx
import pytest

from aps.bench.local.server import LocalServer

pytestmark = pytest.mark.timeout(120)

GATEWAY = """
policy: vtc
drain_timeout_s: 2
tenants:
  - {{id: acme, keys: [sk-acme]}}
upstreams:
  - {{url: {url}, model: up-model, max_in_flight: 8}}
retries: 0
breaker: {{failures: 100, cooldown_s: 1}}
health_interval_s: 0.5
"""


def event(text=None, finish=None, usage=None, chat=False) -> bytes:
    """One SSE event as vLLM writes it."""
    if usage is not None:
        choices = []
    elif chat:
        delta = {} if text is None else {"content": text}
        choices = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    else:
        choices = [{"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish,
                    "stop_reason": None}]
    obj = {"id": "up-1", "object": "chat.completion.chunk" if chat else "text_completion",
           "created": 1, "model": "up-model", "choices": choices, "usage": usage}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


TOKENS = [" caf\u00e9", ' "quoted"', "\n", " \u2713", " end"]
USAGE = {"prompt_tokens": 7, "total_tokens": 12, "completion_tokens": 5}


def pieces(events: list[bytes]) -> list[bytes]:
    """The events cut across writes: the first in two, the next two in one write."""
    first, rest = events[0], events[1:]
    out = [first[:9], first[9:]]
    if len(rest) >= 2:
        out.append(rest[0] + rest[1])
        rest = rest[2:]
    return out + rest


SCRIPTS = {
    "stream": pieces([event(t) for t in TOKENS] + [event("", "length"), event(usage=USAGE),
                                                   b"data: [DONE]\n\n"]),
    "chat": pieces([event(t, chat=True) for t in TOKENS[:3]] + [event(None, "stop", chat=True),
                                                               event(usage=USAGE, chat=True),
                                                               b"data: [DONE]\n\n"]),
    "midstream": pieces([event(t) for t in TOKENS[:3]]
                        + [b'data: {"error":{"message":"engine died","code":500}}\n\n']),
}
PLAIN = {"id": "up-2", "object": "text_completion", "created": 1, "model": "up-model",
         "choices": [{"index": 0, "text": "".join(TOKENS), "logprobs": None,
                      "finish_reason": "length", "stop_reason": None}], "usage": USAGE}
REFUSALS = {"http500": (500, b'{"error":{"message":"out of memory","code":500}}'),
            "http400": (400, b'{"object":"error","message":"prompt too long","code":400}')}


class ScriptedUpstream:
    """An OpenAI-compatible server on 127.0.0.1 on its own event loop thread: each request's
    prompt (a chat's last message) names its script. `hang` sends one token and waits for the
    gateway to close the connection, which it records in `closed`."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _serve(self, reader, writer) -> None:
        try:
            while True:  # keep-alive: one request after another
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = re.search(r"(?im)^content-length:\s*(\d+)", head)
                raw = await reader.readexactly(int(length.group(1))) if length else b""
                path = head.split(" ", 2)[1]
                if not await self._answer(path, json.loads(raw) if raw else {}, reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _answer(self, path: str, body: dict, reader, writer) -> bool:
        """Writes the answer; False when the connection is done with."""
        if not path.startswith("/v1/"):  # /health
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            return True
        name = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
        if name in REFUSALS:
            status, payload = REFUSALS[name]
            writer.write(b"HTTP/1.1 %d Error\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (status, len(payload), payload))
            return True
        if not body.get("stream"):
            payload = json.dumps(PLAIN).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(payload), payload))
            return True
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        if name == "hang":
            await self._chunk(writer, event(TOKENS[0]))
            if await asyncio.wait_for(reader.read(1), 10) == b"":
                self.closed.set()  # the gateway closed the connection: the request is aborted
            return False
        for piece in SCRIPTS[name]:
            await self._chunk(writer, piece)
            await asyncio.sleep(0.005)
        writer.write(b"0\r\n\r\n")
        return True

    @staticmethod
    async def _chunk(writer, data: bytes) -> None:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    up = ScriptedUpstream()
    gw = LocalServer(GATEWAY.format(url=up.url),
                     log_path=tmp_path_factory.mktemp("bytes") / "gateway.log")
    gw.upstream = up
    yield gw
    gw.stop()
    up.stop()


def masked(data: bytes) -> str:
    """The bytes with the request id and the `created` second masked."""
    text = data.decode()
    text = re.sub(r'"(cmpl|chatcmpl)-[0-9a-f]{24}"', r'"\1-ID"', text)
    return re.sub(r'"created":( ?)\d+', r'"created":\1T', text)


def post(gw, body: dict, chat=False) -> tuple[int, str]:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", gw.url + path, json=body,
                      headers={"Authorization": "Bearer sk-acme"}) as r:
            return r.status_code, masked(r.read())


def completion(prompt: str, stream: bool, usage: bool = True) -> dict:
    body = {"model": "up-model", "prompt": prompt, "max_tokens": 5}
    if stream:
        body["stream"] = True
        if usage:
            body["stream_options"] = {"include_usage": True}
    return body


def sse(*objs) -> str:
    return "".join(f"data: {json.dumps(o)}\n\n" for o in objs) + "data: [DONE]\n\n"


def chunk(text, finish=None) -> dict:
    return {"id": "cmpl-ID", "object": "text_completion", "created": "T", "model": "up-model",
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}


def unquote_created(text: str) -> str:
    return text.replace('"created": "T"', '"created": T')


def test_a_stream_is_the_same_events_and_usage(gateway):
    status, got = post(gateway, completion("stream", True))
    usage = {**chunk(""), "choices": [],
             "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}
    expected = sse(*(chunk(t) for t in TOKENS), chunk("", "length"), usage)
    assert status == 200 and got == unquote_created(expected)


def test_a_stream_without_include_usage_has_no_usage_event(gateway):
    _, got = post(gateway, completion("stream", True, usage=False))
    assert got == unquote_created(sse(*(chunk(t) for t in TOKENS), chunk("", "length")))


def test_a_chat_stream_is_the_same_events(gateway):
    body = {"model": "up-model", "messages": [{"role": "user", "content": "chat"}], "max_tokens": 5,
            "stream": True}
    status, got = post(gateway, body, chat=True)

    def delta(d, finish=None):
        return {"id": "chatcmpl-ID", "object": "chat.completion.chunk", "created": "T",
                "model": "up-model", "choices": [{"index": 0, "delta": d, "finish_reason": finish,
                                           "logprobs": None}]}
    expected = sse(delta({"role": "assistant", "content": TOKENS[0]}),
                   *(delta({"content": t}) for t in TOKENS[1:3]), delta({}, "length"))
    assert status == 200 and got == unquote_created(expected)


def test_a_plain_answer_is_the_same_body(gateway):
    status, got = post(gateway, completion("plain", False))
    expected = {"id": "cmpl-ID", "object": "text_completion", "created": "T", "model": "up-model",
                "choices": [{"index": 0, "text": "".join(TOKENS), "finish_reason": "length",
                             "logprobs": None}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}
    expected = json.dumps(expected, ensure_ascii=False, separators=(",", ":"))  # Starlette's
    assert (status, got) == (200, expected.replace('"created":"T"', '"created":T'))


def test_an_error_mid_stream_is_the_same_error_event(gateway):
    _, got = post(gateway, completion("midstream", True))
    error = {"error": {"message": "error event: engine died", "type": "api_error",
                       "param": None, "code": "upstream_error"}}
    assert got == unquote_created(sse(*(chunk(t) for t in TOKENS[:3]), error))


@pytest.mark.parametrize("name,status,kind,code", [
    ("http500", 502, "api_error", "upstream_error"),
    ("http400", 400, "invalid_request_error", "upstream_error"),
])
def test_an_upstream_refusal_is_the_same_error(gateway, name, status, kind, code):
    message = {"http500": "upstream answered 500: out of memory",
               "http400": "upstream answered 400: prompt too long"}[name]
    expected = {"error": {"message": message,
                          "type": kind, "param": None, "code": code}}
    got_status, got = post(gateway, completion(name, False))
    assert (got_status, json.loads(got)) == (status, expected)
    got_status, got = post(gateway, completion(name, True))  # refused before the stream began
    assert (got_status, got) == (200, unquote_created(sse(expected)))


def test_a_client_that_goes_away_closes_the_upstream_connection(gateway):
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", gateway.url + "/v1/completions", json=completion("hang", True),
                      headers={"Authorization": "Bearer sk-acme"}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    break  # the first token came: hang up
    assert gateway.upstream.closed.wait(10)


def test_the_ledger_rows_are_the_same(gateway):
    """Runs last: every request above has its row, with the server's token counts."""
    deadline, rows = time.monotonic() + 10, []
    while len(rows) < 10 and time.monotonic() < deadline:
        with sqlite3.connect(gateway.db_path) as db:
            rows = db.execute("SELECT tenant_id, model, prompt_tokens, completion_tokens, "
                              "status, reason FROM usage ORDER BY id").fetchall()
        time.sleep(0.1)
    upstream = f"upstream {gateway.upstream.url}: "
    finished = ("acme", "up-model", 7, 5, "finished", "length")
    refused = [("acme", "up-model", 2, 0, "failed", upstream + reason)
               for reason in ["upstream answered 500: out of memory"] * 2
               + ["upstream answered 400: prompt too long"] * 2]
    assert rows == [
        finished, finished, ("acme", "up-model", 7, 5, "finished", "stop"), finished,
        ("acme", "up-model", 2, 3, "failed", upstream + "error event: engine died"),
        *refused,
        ("acme", "up-model", 1, 1, "cancelled", "cancelled"),
    ]
