"""`aps serve` in a child process on a free loopback port, for tests and benchmarks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from aps.bench.local.processes import free_port


class LocalServer:
    """`aps serve` in a child process on a free loopback port, with `config` (YAML text);
    stopped by PID with SIGTERM, as an operator would."""

    def __init__(self, config: str, speed: float | None = None, log_path=None,
                 db_path=None, env: dict[str, str] | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="aps-server-")
        self.config_path = os.path.join(self._dir.name, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(config)
        # a fresh database of its own unless told which to share
        self.db_path = str(db_path or os.path.join(self._dir.name, "aps.db"))
        args = [sys.executable, "-m", "aps", "serve", "--port", str(self.port),
                "--config", self.config_path]
        if speed is not None:
            args += ["--speed", str(speed)]
        self._log = open(log_path, "a") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "APS_CONFIG": "", "APS_DB": self.db_path,
                                          **(env or {})})
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server on {self.url} did not start")

    def stop(self) -> int:
        """SIGTERM, wait for the drain, and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._cleanup()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no drain and no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not subprocess.DEVNULL and not self._log.closed:
            self._log.close()
        self._dir.cleanup()
