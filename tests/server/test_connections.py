"""Connections a hostile or broken client opens: silent, slow, oversized, too many. Each is
answered or closed in bounded time, in the API's error shape, while others are still served."""
import json
import socket
import time

import httpx
import pytest

from aps.bench.local.server import LocalServer

CONFIG = """
speed: 20
limits: {max_connections: 24, header_timeout_s: 0.6, max_header_bytes: 16384, max_url_bytes: 2048}
tenants:
  - {id: acme, keys: [sk-acme]}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("conn") / "server.log"
    s = LocalServer(CONFIG, log_path=log)
    s.log_path = log
    yield s
    s.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def read_all(sock: socket.socket, limit_s: float = 5.0) -> bytes:
    """Everything until the server closes the connection (or `limit_s` passes)."""
    sock.settimeout(0.2)
    got, deadline = b"", time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not part:
            break
        got += part
    sock.close()
    return got


def error_of(response: bytes) -> dict:
    head, _, body = response.partition(b"\r\n\r\n")
    return json.loads(body)["error"]


def healthy(server) -> bool:
    return httpx.get(server.url + "/health", timeout=2).status_code == 200


def test_a_silent_connection_is_closed_after_the_header_timeout(server):
    sock = connect(server)
    t0 = time.monotonic()
    assert read_all(sock) == b""
    assert 0.4 < time.monotonic() - t0 < 3


def test_a_slow_head_gets_a_408(server):
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    for i in range(30):  # one header line every 0.1 s: it would take 3 s
        try:
            sock.sendall(b"X-Slow-%d: y\r\n" % i)
        except OSError:
            break
        time.sleep(0.1)
        if time.monotonic() - t0 > 2:
            break
    got = read_all(sock)
    assert got.startswith(b"HTTP/1.1 408") and error_of(got)["code"] == "request_timeout"
    assert time.monotonic() - t0 < 3


def test_an_oversized_head_gets_a_431_and_others_are_still_served(server):
    sock = connect(server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    got = read_all(sock)
    assert got.startswith(b"HTTP/1.1 431") and error_of(got)["code"] == "headers_too_large"
    assert healthy(server)


def test_an_overlong_url_gets_a_414_in_the_error_shape(server):
    r = httpx.get(server.url + "/health?x=" + "a" * 5000, timeout=5)
    assert r.status_code == 414 and r.json()["error"]["code"] == "uri_too_long"


def test_garbage_gets_a_400_in_the_error_shape(server):
    sock = connect(server)
    sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    got = read_all(sock)
    assert got.startswith(b"HTTP/1.1 400") and error_of(got)["type"] == "invalid_request_error"


def test_kept_alive_connections_and_long_streams_are_not_cut_by_the_head_deadline(server):
    with httpx.Client(timeout=10) as client:
        for _ in range(3):  # the same connection, with pauses longer than nothing
            assert client.get(server.url + "/health").status_code == 200
        t0 = time.monotonic()
        with client.stream("POST", server.url + "/v1/completions",
                           headers={"Authorization": "Bearer sk-acme"},
                           json={"prompt": "hi", "max_tokens": 1500, "stream": True}) as r:
            body = b"".join(r.iter_bytes())
        assert time.monotonic() - t0 > 0.6  # longer than the head deadline
        assert body.rstrip().endswith(b"data: [DONE]")


def test_connections_over_the_cap_are_refused_and_logged(server):
    held = [connect(server) for _ in range(30)]  # silent: each holds a slot until its deadline
    time.sleep(0.2)
    answers = []
    for sock in held:
        sock.settimeout(0.05)
        try:
            answers.append(sock.recv(4096))
        except socket.timeout:
            answers.append(b"")
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
    assert refused and error_of(refused[0])["code"] == "too_many_connections"
    for sock in held:
        sock.close()
    time.sleep(0.8)  # the silent ones time out: there is room again
    assert healthy(server)
    assert "connection limit reached" in server.log_path.read_text()
