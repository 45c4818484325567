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
