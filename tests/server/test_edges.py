"""What reaches the gateway before any route runs: a body is counted as it arrives and capped,
and a request without a valid key is answered before its body is read. Raw sockets, because an
HTTP client would not send what a hostile one does."""
import socket
import time

import pytest

from served import module_server

CONFIG = """
max_body_bytes: 20000
admin_key: admin-key-0123456789
tenants:
  - {id: acme, keys: [sk-acme]}
"""
CHUNK = b"x" * 65536


server = module_server(CONFIG, "edge")


def open_chunked(server, path: str, headers: dict[str, str]) -> socket.socket:
    """A POST whose body has no length: chunked, and never finished unless the server answers."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Transfer-Encoding: chunked\r\n{head}\r\n".encode())
    return sock


def answer_while_sending(sock: socket.socket, chunks: int) -> bytes:
    """Send up to `chunks` chunks of 64 KiB, stopping as soon as the server has answered."""
    sock.setblocking(False)
    got = b""
    for _ in range(chunks):
        try:
            got += sock.recv(65536)
        except BlockingIOError:
            pass
        if b"\r\n\r\n" in got:
            break
        try:
            sock.send(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass
        time.sleep(0.02)
    deadline = time.monotonic() + 3
    while b"\r\n\r\n" not in got and time.monotonic() < deadline:
        try:
            got += sock.recv(65536)
        except BlockingIOError:
            time.sleep(0.02)
        except ConnectionResetError:
            break
    sock.close()
    return got


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/admin/tenants/x"])
def test_a_body_without_a_key_is_refused_before_it_is_read(server, path):
    sock = open_chunked(server, path, {})
    got = answer_while_sending(sock, chunks=8)  # 512 KiB at most, never a finished body
    assert got.startswith(b"HTTP/1.1 401"), got[:200]
    assert b'"error"' in got


def test_a_body_with_an_unknown_key_is_refused_before_it_is_read(server):
    sock = open_chunked(server, "/v1/completions", {"Authorization": "Bearer sk-nope"})
    got = answer_while_sending(sock, chunks=8)
    assert got.startswith(b"HTTP/1.1 401") and b"invalid_api_key" in got


def test_a_chunked_body_over_the_limit_is_stopped_at_the_limit(server):
    sock = open_chunked(server, "/v1/completions", {"Authorization": "Bearer sk-acme"})
    got = answer_while_sending(sock, chunks=64)  # would be 4 MiB; the limit is 20 kB
    assert got.startswith(b"HTTP/1.1 413"), got[:200]
    assert b'"error"' in got


def test_a_declared_length_over_the_limit_is_refused_without_reading(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-acme\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
    got = sock.recv(65536)
    sock.close()
    assert got.startswith(b"HTTP/1.1 413")
