"""What the gateway, the store and the CLI refuse: values they could not keep or serve are a 400
(or exit status 2) at the edge, never a 500 later, and every error says what was wrong in
OpenAI's shape, with a code."""
import json
import math

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aps.bench.local.server import LocalServer
from aps.cli import app as cli
from aps.core import ConfigError, Tenant
from aps.server import errors
from aps.store import Store
from aps.store.directory import Directory
from served import module_server

ADMIN = "admin-key-for-validation-0123"
CONFIG = f"""
speed: 200
admin_key: {ADMIN}
tenants:
  - {{id: acme, keys: [sk-acme-valid], bid: 8}}
"""
KEY = {"Authorization": "Bearer sk-acme-valid"}


server = module_server(CONFIG, "validation")


def admin(server, method, path, **kw):
    return httpx.request(method, server.url + "/admin" + path,
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10, **kw)


def admin_raw(server, method, path, text):
    """`text` sent as the JSON body as it is (1e309, NaN, ...)."""
    return httpx.request(method, server.url + "/admin" + path, content=text.encode(),
                         headers={"Authorization": f"Bearer {ADMIN}",
                                  "Content-Type": "application/json"}, timeout=10)


def error_of(r: httpx.Response, status: int = 400) -> dict:
    """The error of a response that must be `status` in OpenAI's shape, with a code."""
    assert r.status_code == status, (r.status_code, r.text)
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and isinstance(error["type"], str)
    assert isinstance(error["code"], str) and error["code"], error
    return error


# -- the admin API -------------------------------------------------------------------------


@pytest.mark.parametrize("body, param", [
    ('{"token_rate": 1e309}', "token_rate"),
    ('{"weight": -1e309}', "weight"),
    ('{"request_burst": NaN}', "request_burst"),
    ('{"token_burst": Infinity}', "token_burst"),
    ('{"weight": 1e300}', "weight"),
    ('{"max_concurrent": 18446744073709551617}', "max_concurrent"),
    ('{"max_concurrent": true}', "max_concurrent"),
    ('{"bid": 11}', "bid"),
])
def test_a_tenant_value_that_could_not_be_read_back_is_refused(server, body, param):
    for method in ("PUT", "PATCH"):
        error = error_of(admin_raw(server, method, "/tenants/acme", body))
        assert error["param"] == param and error["code"] == "invalid_request", error
        assert param in error["message"]
    listed = admin(server, "GET", "/tenants")
    assert listed.status_code == 200, listed.text  # nothing unreadable was written
    assert admin(server, "GET", "/tenants/acme").json()["bid"] == 8


@pytest.mark.parametrize("field", ["weight", "bid", "over_limit"])
def test_a_field_that_cannot_be_unset_refuses_null(server, field):
    for method in ("PATCH", "PUT"):
        error = error_of(admin(server, method, "/tenants/acme", json={field: None}))
        assert error["param"] == field and "cannot be null" in error["message"], error
    assert admin(server, "GET", "/tenants/acme").json()["bid"] == 8


def test_null_clears_a_limit(server):
    assert admin(server, "PUT", "/tenants/nully", json={"token_rate": 50, "max_concurrent": 3,
                                                         "weight": 2}).status_code == 201
    r = admin(server, "PATCH", "/tenants/nully", json={"token_rate": None, "max_concurrent": None})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["token_rate"] is None and got["token_burst"] is None
    assert got["max_concurrent"] is None and got["weight"] == 2
    assert admin(server, "DELETE", "/tenants/nully").status_code == 204


@pytest.mark.parametrize("limit", ["0", "-1", "18446744073709551617", "ten"])
def test_the_usage_limit_is_bounded(server, limit):
    error = error_of(admin(server, "GET", "/usage", params={"limit": limit}))
    assert error["param"] == "limit", error
    assert admin(server, "GET", "/usage", params={"limit": "5"}).status_code == 200


@pytest.mark.parametrize("since", ["someday", "9999-12-31T23:59:59-23:59", "1e999", "99999999999w"])
def test_odd_times_are_a_400_or_an_answer(server, since):
    for path in ("/usage", "/usage/summary"):
        r = admin(server, "GET", path, params={"since": since})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            error_of(r)


# -- the OpenAI and seeds' routes ----------------------------------------------------------


@pytest.mark.parametrize("path, body, param", [
    ("/v1/completions", {"prompt": "p", "max_tokens": True}, "max_tokens"),
    ("/v1/completions", {"prompt": "p", "max_tokens": 3.0}, "max_tokens"),
    ("/v1/completions", {"prompt": "p", "max_tokens": "3"}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "max_completion_tokens": False}, "max_completion_tokens"),
    ("/v1/completions", {"prompt": "p", "stream": "yes"}, "stream"),
    ("/v1/completions", {"prompt": "p", "stream": 1}, "stream"),
    ("/v1/completions", {"prompt": "p", "stream": True, "stream_options": {"include_usage": "yes"}},
     "stream_options.include_usage"),
    ("/v1/completions", {"prompt": "p", "priority": True}, "priority"),
    ("/v1/completions", {"prompt": "p", "n": "1"}, "n"),
    ("/infer", {"prompt": "p", "tokens_requested": True}, "tokens_requested"),
    ("/infer", {"prompt": "p", "priority_bid": "9"}, "priority_bid"),
])
def test_integers_and_booleans_are_strict(server, path, body, param):
    error = error_of(httpx.post(server.url + path, json=body, headers=KEY, timeout=10))
    assert error["param"] == param and error["code"] == "invalid_request", error


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "p", "max_tokens": 2}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
])
def test_only_one_choice_is_served(server, path, body):
    for n in (2, 5):
        error = error_of(httpx.post(server.url + path, json={**body, "n": n}, headers=KEY,
                                    timeout=10))
        assert error["param"] == "n" and "n=1" in error["message"], error
    for extra in ({"n": 1}, {}):
        r = httpx.post(server.url + path, json={**body, **extra}, headers=KEY, timeout=10)
        assert r.status_code == 200 and len(r.json()["choices"]) == 1, r.text


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/infer",
                                  "/admin/tenants/acme"])
def test_a_body_that_is_not_json_says_so(server, path):
    headers = {**KEY, "Content-Type": "application/json"}
    if path.startswith("/admin"):
        headers["Authorization"] = f"Bearer {ADMIN}"
    method = "PATCH" if path.startswith("/admin") else "POST"
    for text in ('{"prompt": "p",', "not json", '{"prompt": "p"} trailing'):
        r = httpx.request(method, server.url + path, content=text.encode(), headers=headers)
        error = error_of(r)
        assert error["param"] is None and error["code"] == "invalid_json", error
        assert error["message"].startswith("request body is not valid JSON: "), error


def test_a_body_without_a_json_content_type_says_what_to_send(server):
    r = httpx.post(server.url + "/v1/completions", content=b'{"prompt": "p"}',
                   headers={**KEY, "Content-Type": "text/plain"})
    error = error_of(r)
    assert "Content-Type: application/json" in error["message"] and error["param"] is None


def test_an_unexpected_exception_is_a_500_in_openais_shape():
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("a bug")

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    error = error_of(r, 500)
    assert error["code"] == "internal_error" and "a bug" not in error["message"]


def test_every_error_has_a_code(server):
    error = error_of(httpx.get(server.url + "/no/such/route"), 404)
    assert error["code"] == "not_found"
    error = error_of(httpx.delete(server.url + "/v1/models", headers=KEY), 405)
    assert error["code"] == "method_not_allowed"
    error = error_of(httpx.post(server.url + "/v1/completions", json={"max_tokens": 3},
                                headers=KEY))
    assert error["code"] == "invalid_request" and error["param"] == "prompt"


def test_the_schema_documents_400_in_openais_shape(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    components = schema["components"]["schemas"]
    operations = [(path, method, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items()]
    assert len(operations) >= 10
    for path, method, op in operations:
        assert "422" not in op["responses"], (method, path)
        bad = op["responses"]["400"]["content"]["application/json"]["schema"]
        shape = components[bad["$ref"].rsplit("/", 1)[-1]]
        error = components[shape["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
        assert set(error["required"]) == {"message", "type", "param", "code"}
    assert "HTTPValidationError" not in components


# -- the store, the seeded configuration and the CLI ---------------------------------------


@pytest.mark.parametrize("fields", [
    {"weight": math.inf}, {"token_rate": math.inf}, {"token_burst": 1e300},
    {"request_rate": 1e-300}, {"request_burst": math.inf}, {"max_concurrent": 2**63},
    {"max_concurrent": 2**40}, {"bid": True}, {"bid": 5.5},
])
def test_the_store_never_writes_a_tenant_it_could_not_read_back(tmp_path, fields):
    store = Store(tmp_path / "aps.db")
    store.put_tenant(Tenant("ok"))
    with pytest.raises(ConfigError):
        store.put_tenant(Tenant("bad", **fields))
    with pytest.raises(ConfigError):
        store.update_tenant("ok", **fields)
    assert store.tenants() == [Tenant("ok")]


def test_a_seeded_tenant_is_checked_too(tmp_path):
    store = Store(tmp_path / "aps.db")
    with pytest.raises(ConfigError, match="token_rate"):
        Directory(store, [(Tenant("inf", token_rate=math.inf), ["sk-inf"])])
    assert store.tenants() == []
    log = tmp_path / "server.log"
    try:
        s = LocalServer("tenants:\n  - {id: big, keys: [sk-big-1], max_concurrent: 1.0e+30}\n"
                        "  - {id: inf, keys: [sk-inf-1], token_rate: .inf}\n",
                        log_path=log, db_path=tmp_path / "served.db")
    except RuntimeError:
        assert "token_rate" in log.read_text() or "max_concurrent" in log.read_text()
    else:
        s.stop()
        pytest.fail("a server started with a tenant it cannot keep")


@pytest.mark.parametrize("args", [
    ["--token-rate", "inf"], ["--token-burst", "nan"], ["--weight", "1e309"],
    ["--request-rate", "-1"], ["--max-concurrent", "99999999999999999999"], ["--bid", "11"],
    ["--bid", "0"], ["--weight", "1e300"],
])
def test_the_cli_refuses_what_the_store_cannot_keep(tmp_path, args):
    db = ["--db", str(tmp_path / "aps.db")]
    runner = CliRunner()
    assert runner.invoke(cli, ["tenants", "add", "newco", *args, *db]).exit_code == 2
    assert not (tmp_path / "aps.db").exists()  # refused before the database is created
    assert runner.invoke(cli, ["tenants", "add", "fine", "--no-key", *db]).exit_code == 0
    for command in (["tenants", "add", "newco", *args], ["tenants", "set", "fine", *args]):
        run = runner.invoke(cli, [*command, *db])
        assert run.exit_code == 2, (command, run.output, run.exception)
        assert run.exception is None or isinstance(run.exception, SystemExit), run.exception
        option = args[0].removeprefix("--")
        said = " ".join(run.output.split())
        assert option in said or option.replace("-", "_") in said, said
    listed = runner.invoke(cli, ["tenants", "list", "--json", *db])
    assert [t["id"] for t in json.loads(listed.output)] == ["fine"]
    assert json.loads(listed.output)[0]["weight"] == 1.0
