"""Every route of a real `aps serve` against what its OpenAPI schema says, with schemathesis:
valid and invalid parameters and bodies, generated from the schema. Whatever is sent, the
gateway never answers 5xx, and every 4xx is an error in OpenAI's shape with a code.

Generated through schemathesis' Python API (a Hypothesis strategy per operation) rather than
its pytest plugin, whose fixture-loaded schemas need a pytest internal that pytest 9 removed.
Streamed answers (`"stream": true`) are kept: the checks look only at the status and at error
bodies, which are never streamed."""
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode

from served import module_server

ADMIN = "admin-key-for-schemathesis-0123"
KEYS = ["sk-schema-acme-0123456789", "sk-schema-beta-0123456789"]
# Tenants and keys no generated string will name; limits that keep every request short: one
# that asks for more than its tenant's burst is refused at once, and the simulated GPU is fast.
CONFIG = f"""
speed: 1000
admin_key: {ADMIN}
tenants:
  - {{id: schema-acme-tenant, keys: [{KEYS[0]}], token_rate: 100000, token_burst: 600,
      over_limit: demote}}
  - {{id: schema-beta-tenant, keys: [{KEYS[1]}], bid: 2, token_rate: 5, token_burst: 400}}
"""
OPERATIONS = [
    ("POST", "/infer"), ("POST", "/generate"), ("GET", "/health"),
    ("GET", "/tenants/{tenant_id}/status"),
    ("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/v1/chat/completions"),
    ("GET", "/metrics"),
    ("GET", "/admin/tenants"), ("GET", "/admin/tenants/{tenant_id}"),
    ("PUT", "/admin/tenants/{tenant_id}"), ("PATCH", "/admin/tenants/{tenant_id}"),
    ("DELETE", "/admin/tenants/{tenant_id}"), ("POST", "/admin/tenants/{tenant_id}/keys"),
    ("GET", "/admin/keys"), ("DELETE", "/admin/keys/{prefix}"),
    ("GET", "/admin/usage"), ("GET", "/admin/usage/summary"),
    ("GET", "/console/api/live"),
]
EXAMPLES = 30  # per operation, valid and invalid together: about 500 requests in all


server = module_server(CONFIG, "schemathesis")


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_every_route_is_exercised(schema):
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_5xx_and_every_error_in_openais_shape(schema, server, method, path):
    operation = schema[path][method]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))
    admin = path.startswith(("/admin", "/console"))  # the console's figures: the admin key

    @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases, which=st.integers(0, len(KEYS) - 1))
    def check(case, which):
        key = ADMIN if admin else KEYS[which]  # a valid key: the routes themselves are probed
        response = case.call(base_url=server.url, timeout=10,
                             headers={"Authorization": f"Bearer {key}"})
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text[:500]}"
        if response.status_code < 400:
            return
        body = response.json()
        assert set(body) == {"error"}, f"{where}: {body}"
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, f"{where}: {body}"
        assert isinstance(error["message"], str) and isinstance(error["type"], str), where
        assert isinstance(error["code"], str) and error["code"], f"{where}: {body}"
        assert error["param"] is None or isinstance(error["param"], str), f"{where}: {body}"

    check()
