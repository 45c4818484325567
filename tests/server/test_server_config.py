"""Server configuration: file, environment, overrides, and clear errors."""
import pytest

from aps.core import ConfigError
from aps.server.config import load_config
from aps.server.serve import is_loopback, serve


def test_defaults_are_the_demo():
    cfg = load_config(env={})
    assert not cfg.tenants and cfg.host == "127.0.0.1" and cfg.port == 8002 and cfg.policy == "aps"
    assert [t.keys[0] for t in cfg.tenant_configs()] == [
        "sk-demo-tenant_a", "sk-demo-tenant_b", "sk-demo-tenant_c"]


def test_file_then_environment_then_options(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("policy: vtc\nport: 9000\nspeed: 2\ntenants:\n  - {id: a, keys: [k1]}\n")
    cfg = load_config(path, env={"APS_PORT": "9100", "APS_SPEED": "4"}, speed=8)
    assert (cfg.policy, cfg.port, cfg.speed, bool(cfg.tenants)) == ("vtc", 9100, 8.0, True)


@pytest.mark.parametrize("text, message", [
    ("speed: 0\n", "field 'speed'"),
    ("tenants:\n  - {id: a, bid: 12}\n", "bid must be a whole number from 1 to 10"),
    ("tenants:\n  - {id: a, colour: red}\n", "field 'tenants.0.colour'"),
    ("tenants:\n  - {id: a, keys: [k]}\n  - {id: b, keys: [k]}\n", "given to two tenants"),
    ("- just\n- a list\n", "expected a mapping"),
    ("port: [\n", "cannot read"),
    ("store: {url: 'mysql://u:secret@h/db'}\n", "must be a postgresql:// URL"),
    ("store: {db_timeout_s: 0}\n", "field 'store.db_timeout_s'"),
    ("store: {ledger_buffer_rows: 0}\n", "field 'store.ledger_buffer_rows'"),
    ("store: {ledger_full: ignore}\n", "field 'store.ledger_full'"),
])
def test_a_bad_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(path, env={})
    assert "secret" not in str(refused.value)  # a database URL may hold a password


def test_keyless_demo_tenants_stay_on_loopback(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    env = {"APS_DB": str(tmp_path / "new.db")}
    with pytest.raises(ConfigError, match="refusing to serve on 0.0.0.0: the demo tenants "
                                          r"\(tenant_a, tenant_b, tenant_c\) take requests "
                                          "without a key") as refused:
        serve(load_config(env=env, host="0.0.0.0"))
    assert "--force" not in str(refused.value)  # the way out is keys, not opening it up


def test_upstreams_may_serve_several_models_and_aliases_must_name_one(tmp_path):
    from aps.server.app import create_app
    ups = [{"url": "http://127.0.0.1:1", "model": "a"}, {"url": "http://127.0.0.1:2", "model": "b"}]
    env = {"APS_DB": str(tmp_path / "a.db")}
    assert [u.model for u in load_config(env=env, upstreams=ups).upstreams] == ["a", "b"]
    gateway = create_app(load_config(env=env, upstreams=ups, aliases={"x": "b"})).state.gateway
    assert gateway.models == {"a": "a", "b": "b", "x": "b"}
    with pytest.raises(ConfigError, match="aliases: 'x' names 'c', which is not served here"):
        create_app(load_config(env=env, upstreams=ups, aliases={"x": "c"}))
    with pytest.raises(ConfigError, match="aliases: 'y' names 'x', which is not served here"):
        create_app(load_config(env=env, upstreams=ups, aliases={"x": "b", "y": "x"}))


def test_a_model_price_must_name_a_served_model(tmp_path):
    """A typo in a model's price would quietly bill the default price instead."""
    from aps.server.app import create_app
    ups = [{"url": "http://127.0.0.1:1", "model": "a"}, {"url": "http://127.0.0.1:2", "model": "b"}]
    env = {"APS_DB": str(tmp_path / "a.db")}
    prices = {"input_per_1m": 0.1, "b": {"input_per_1m": 0.6}}
    gateway = create_app(load_config(env=env, upstreams=ups, prices=prices)).state.gateway
    assert gateway.config.prices.for_model("b") == pytest.approx((0.6e-6, 0.0))
    assert gateway.config.prices.for_model("a") == pytest.approx((0.1e-6, 0.0))
    with pytest.raises(ConfigError, match="prices: 'bb' is not a model served here"):
        create_app(load_config(env=env, upstreams=ups, prices={"bb": {"input_per_1m": 0.6}}))
    with pytest.raises(ConfigError, match="prices: 'x' is not a model served here"):
        create_app(load_config(env=env, upstreams=ups, aliases={"x": "b"},
                               prices={"x": {"input_per_1m": 0.6}}))  # an alias has no price


def test_a_request_that_ended_unfinished_maps_to_the_right_http_error():
    """The only place a request's end becomes an HTTP status: the gateway."""
    from aps.core import Request, Status
    from aps.engines.upstream_http import UpstreamError
    from aps.server.gateway import ended_error

    def ended(status, reason=""):
        req = Request("r", "t", 1, 1, 0.0)
        req.status, req.reason = status, reason
        return req

    failed = ended(Status.FAILED, "upstream x: bad")
    client_error = UpstreamError(400, "prompt too long", retryable=False)
    assert ended_error(failed, client_error).status == 400  # the client's own mistake, passed on
    assert ended_error(failed, UpstreamError(None, "reset", retryable=True)).status == 502
    assert ended_error(failed, UpstreamError(503, "busy", retryable=True)).status == 502
    cancelled = ended_error(ended(Status.CANCELLED, "cancelled"), None)
    assert cancelled.status == 503 and cancelled.headers.get("Retry-After")
    assert ended_error(ended(Status.FAILED, "internal error"), None).status == 500


@pytest.mark.parametrize("seats, reserved", [(1, 0), (8, 0), (15, 0), (16, 1), (64, 4)])
def test_upstreams_reserve_one_seat_in_16_for_newcomers(tmp_path, seats, reserved):
    ups = [{"url": "http://127.0.0.1:1", "model": "a", "max_in_flight": seats}]
    cfg = load_config(env={}, upstreams=ups)
    assert cfg.batch_config(1).reserved_seats == reserved
    assert load_config(env={}, upstreams=ups, batch={"reserved_seats": 0}) \
        .batch_config(1).reserved_seats == 0
