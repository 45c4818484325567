"""PostgreSQL for the tests: one throwaway server for the session with a fresh database per test
(`pg_url`), or a server of a test's own (`PostgresServer`) for one it stops and restarts. Skips,
saying how to install it, when the machine has none. The servers run with fsync off: the tests
kill and restart PostgreSQL, never the machine, and the disk is shared with other work."""
import uuid

import pytest

from aps.bench.local.postgres_server import INSTALL, PostgresMissing
from aps.bench.local.postgres_server import PostgresServer as _PostgresServer

FAST = {"fsync": "off"}


def PostgresServer(log_path=None, port=None):
    try:
        return _PostgresServer(log_path, port, settings=FAST)
    except PostgresMissing:
        pytest.skip(INSTALL + " (CI's .ci/run installs it)")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    server = PostgresServer(tmp_path_factory.mktemp("postgres") / "postgres.log")
    yield server
    server.close()


@pytest.fixture
def pg_url(postgres):
    """A new, empty database on the session's server."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
