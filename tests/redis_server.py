"""redis-server for the cluster-mode tests: skips the test, saying how to install it, when
the machine has none."""
import pytest

from aps.bench.local.redis_server import INSTALL, RedisMissing
from aps.bench.local.redis_server import RedisServer as _RedisServer


def RedisServer(log_path, port=None, data_dir=None):
    try:
        return _RedisServer(log_path, port, data_dir)
    except RedisMissing:
        pytest.skip(INSTALL + " (CI's .ci/run installs it)")


class Restartable:
    """A redis-server a test stops and starts again on the same port: empty, or with its data
    when `data_dir` is given. The `redis` fixture stops it at the end, whatever happened."""

    def __init__(self, tmp_path, data_dir=None):
        self.tmp_path, self.data_dir, self.starts = tmp_path, data_dir, 0
        self.server = self._start(None)

    def _start(self, port):
        self.starts += 1
        return RedisServer(self.tmp_path / f"redis-{self.starts}.log", port, self.data_dir)

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        """Start again after `stop`, on the same port."""
        self.server = self._start(self.server.port)

