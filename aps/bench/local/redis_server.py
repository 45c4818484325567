"""A real redis-server on a free loopback port, for benchmarks and tests, stopped by PID."""
from __future__ import annotations

import shutil
import subprocess
import time

import redis

from aps.bench.local.processes import free_port

INSTALL = "redis-server is not installed: `apt-get install -y redis-server`"


class RedisMissing(RuntimeError):
    pass


class RedisServer:
    def __init__(self, log_path=None, port: int | None = None, data_dir=None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisMissing(INSTALL)
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = open(log_path, "a") if log_path else subprocess.DEVNULL
        # no persistence: a restart comes back empty, the worst case for the gateways; with
        # `data_dir`, every write is in its append-only file and a restart comes back with it
        keep = ["--appendonly", "no"] if data_dir is None else [
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", *keep],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
