import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import Restartable  # noqa: E402 (found through the path above)


@pytest.fixture
def redis(tmp_path):
    """A redis-server a test may stop and start again (it comes back empty); stopped at the
    end, whatever happened."""
    server = Restartable(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def kept_redis(tmp_path):
    """The same, keeping its data across a restart (an append-only file)."""
    server = Restartable(tmp_path, data_dir=tmp_path)
    yield server
    server.stop()
