"""One `aps serve` shared by a test module's tests."""
import pytest

from aps.bench.local.server import LocalServer


def module_server(config: str, name: str):
    """A module-scoped fixture: a real gateway with `config` on 127.0.0.1, its log in a
    temporary folder named `name`, stopped after the module's last test."""
    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        s = LocalServer(config, log_path=tmp_path_factory.mktemp(name) / "server.log")
        yield s
        s.stop()
    return server
