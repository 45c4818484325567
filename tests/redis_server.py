"""A real redis-server on a free loopback port, for the cluster-mode tests. Skips the test with
the install command when redis-server is missing."""
from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from aps.cli.loadgen import _free_port

INSTALL = "redis-server is not installed: `apt-get install -y redis-server` (CI's .ci/run does)"


class RedisServer:
    def __init__(self, log_path, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(INSTALL)
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = open(log_path, "a")
        # no persistence: a restart comes back empty, the worst case for the gateways
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
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
        self._log.close()
