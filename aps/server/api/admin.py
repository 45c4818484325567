"""The admin API under /admin, for the operator: tenants, keys and usage.

Every call needs `Authorization: Bearer <admin_key>`; with no `admin_key` configured the API is
off (403 says how to turn it on). Changes are written to the database and applied to the
running scheduler at once; other replicas pick them up within `store.reload_s`.

    GET    /admin/tenants                 PUT  /admin/tenants/{id}   (create or replace)
    GET    /admin/tenants/{id}            PATCH /admin/tenants/{id}  (change some fields)
    DELETE /admin/tenants/{id}
    POST   /admin/tenants/{id}/keys       (the new key, shown this once)
    GET    /admin/keys[?tenant=]          DELETE /admin/keys/{prefix}
    GET    /admin/usage?tenant=&since=&until=&limit=&format=json|csv
    GET    /admin/usage/summary[?since=]
"""
from __future__ import annotations

import hmac
import time

from fastapi import APIRouter, Depends, Header, Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from aps.core import ConfigError, OverLimit, Tenant
from aps.server.errors import ApiError
from aps.store import StoreError
from aps.store.export import parse_time, usage_csv
from aps.store.sqlite import KEY_PREFIX_LEN


def _admin(http: HttpRequest, authorization: str | None = Header(None)):
    gw = http.app.state.gateway
    expected = gw.config.admin_key
    if expected is None:
        raise ApiError(403, "the admin API is off: set admin_key in the configuration "
                            "(or APS_ADMIN_KEY)", "admin_disabled")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "admin API: missing or wrong admin key", "invalid_admin_key")
    return gw


router = APIRouter(prefix="/admin", dependencies=[Depends(_admin)])


class TenantFields(BaseModel):
    """A tenant's settings; omitted fields keep their defaults (PUT) or values (PATCH)."""
    model_config = ConfigDict(extra="forbid")
    weight: float | None = Field(None, gt=0)
    bid: int | None = Field(None, ge=1, le=10)
    token_rate: float | None = Field(None, gt=0)
    token_burst: float | None = Field(None, gt=0)
    request_rate: float | None = Field(None, gt=0)
    request_burst: float | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, ge=1)
    over_limit: OverLimit | None = None


def tenant_json(t: Tenant) -> dict:
    return {"id": t.tenant_id, "weight": t.weight, "bid": t.bid, "token_rate": t.token_rate,
            "token_burst": t.token_burst, "request_rate": t.request_rate,
            "request_burst": t.request_burst, "max_concurrent": t.max_concurrent,
            "over_limit": t.over_limit.value}


@router.get("/tenants")
async def list_tenants(http: HttpRequest):
    gw = http.app.state.gateway
    return {"data": [tenant_json(t) for t in gw.store.tenants()]}


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: str, http: HttpRequest):
    tenant = http.app.state.gateway.store.tenant(tenant_id)
    if tenant is None:
        raise ApiError(404, f"no tenant {tenant_id!r}", "not_found")
    return tenant_json(tenant)


@router.put("/tenants/{tenant_id}")
async def put_tenant(tenant_id: str, body: TenantFields, http: HttpRequest):
    gw = http.app.state.gateway
    fields = body.model_dump(exclude_none=True)
    try:
        tenant = Tenant(tenant_id, **fields)
    except ConfigError as exc:
        raise ApiError(400, str(exc), "invalid_tenant") from None
    created = gw.store.put_tenant(tenant)
    gw.reload()  # here at once; other replicas within store.reload_s
    return JSONResponse(tenant_json(tenant), status_code=201 if created else 200)


@router.patch("/tenants/{tenant_id}")
async def patch_tenant(tenant_id: str, body: TenantFields, http: HttpRequest):
    gw = http.app.state.gateway
    try:
        tenant = gw.store.update_tenant(tenant_id, **body.model_dump(exclude_unset=True))
    except StoreError as exc:
        raise ApiError(404, str(exc), "not_found") from None
    except ConfigError as exc:
        raise ApiError(400, str(exc), "invalid_tenant") from None
    gw.reload()  # here at once; other replicas within store.reload_s
    return tenant_json(tenant)


@router.delete("/tenants/{tenant_id}", status_code=204)
async def delete_tenant(tenant_id: str, http: HttpRequest):
    gw = http.app.state.gateway
    if not gw.store.remove_tenant(tenant_id):
        raise ApiError(404, f"no tenant {tenant_id!r}", "not_found")
    gw.reload()  # here at once; other replicas within store.reload_s
    return Response(status_code=204)


@router.post("/tenants/{tenant_id}/keys", status_code=201)
async def create_key(tenant_id: str, http: HttpRequest):
    gw = http.app.state.gateway
    try:
        key = gw.store.create_key(tenant_id)
    except StoreError as exc:
        raise ApiError(404, str(exc), "not_found") from None
    gw.reload()  # here at once; other replicas within store.reload_s
    return {"tenant_id": tenant_id, "key": key, "prefix": key[:KEY_PREFIX_LEN],
            "note": "store this key now: only its hash is kept"}


@router.get("/keys")
async def list_keys(http: HttpRequest, tenant: str | None = None):
    keys = http.app.state.gateway.store.keys(tenant)
    return {"data": [{"prefix": k.prefix, "tenant_id": k.tenant_id, "created_at": k.created_at,
                      "revoked_at": k.revoked_at} for k in keys]}


@router.delete("/keys/{prefix}", status_code=204)
async def revoke_key(prefix: str, http: HttpRequest):
    gw = http.app.state.gateway
    try:
        revoked = gw.store.revoke_key(prefix)
    except StoreError as exc:
        raise ApiError(409, str(exc), "ambiguous_key") from None
    if not revoked:
        raise ApiError(404, f"no live key with prefix {prefix!r}", "not_found")
    gw.reload()  # here at once; other replicas within store.reload_s
    return Response(status_code=204)


@router.get("/usage")
async def usage(http: HttpRequest, tenant: str | None = None, since: str | None = None,
                until: str | None = None, limit: int | None = None, format: str = "json"):
    gw = http.app.state.gateway
    if format not in ("json", "csv"):
        raise ApiError(400, f"format must be json or csv, got {format!r}", "invalid_request")
    if limit is not None and limit < 1:
        raise ApiError(400, "limit must be >= 1", "invalid_request")
    try:
        now = time.time()
        rows = gw.store.usage(tenant, parse_time(since, now), parse_time(until, now), limit)
    except StoreError as exc:
        raise ApiError(400, str(exc), "invalid_request") from None
    if format == "csv":
        return Response(usage_csv(rows), media_type="text/csv")
    return {"data": rows}


@router.get("/usage/summary")
async def usage_summary(http: HttpRequest, tenant: str | None = None, since: str | None = None,
                        until: str | None = None):
    gw = http.app.state.gateway
    try:
        now = time.time()
        return {"data": gw.store.usage_totals(tenant, parse_time(since, now), parse_time(until, now))}
    except StoreError as exc:
        raise ApiError(400, str(exc), "invalid_request") from None
