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

import time
from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Request as HttpRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aps.core import ConfigError, OverLimit, Tenant
from aps.core.tenant import AMOUNT_RANGE, BID_RANGE, MAX_COUNT
from aps.server.errors import ApiError
from aps.store import StoreError
from aps.store.export import parse_time, usage_csv
from aps.store.sqlite import key_label

MAX_USAGE_ROWS = 1_000_000  # the most `limit` may ask for; without `limit`, every row


def _admin(http: HttpRequest, authorization: str | None = Header(None)):
    """Checked first by the gateway's middleware, before any body is read; again here, so a
    route never runs without it."""
    http.app.state.gateway.check_admin(authorization)


router = APIRouter(prefix="/admin", dependencies=[Depends(_admin)])


def _no_default(schema: dict) -> None:
    schema.pop("default", None)  # omitted means "as it is", not null


def _amount(nullable: bool):
    """A weight, rate or burst: finite and within what the store keeps (AMOUNT_RANGE)."""
    low, high = AMOUNT_RANGE
    return Field(None, ge=low, le=high, allow_inf_nan=False, strict=True,
                 json_schema_extra=None if nullable else _no_default)


class TenantFields(BaseModel):
    """A tenant's settings; omitted fields keep their defaults (PUT) or values (PATCH). A limit
    (rates, bursts, max_concurrent, max_bid, max_queue_s, budget_usd) may be null: no limit;
    weight, bid, over_limit, budget_period and over_budget may not."""
    model_config = ConfigDict(extra="forbid")
    weight: float = _amount(nullable=False)
    bid: int = Field(None, ge=BID_RANGE[0], le=BID_RANGE[1], strict=True,
                     json_schema_extra=_no_default)
    token_rate: float | None = _amount(nullable=True)
    token_burst: float | None = _amount(nullable=True)
    request_rate: float | None = _amount(nullable=True)
    request_burst: float | None = _amount(nullable=True)
    max_concurrent: int | None = Field(None, ge=1, le=MAX_COUNT, strict=True)
    over_limit: OverLimit = Field(None, json_schema_extra=_no_default)
    max_bid: int | None = Field(None, ge=BID_RANGE[0], le=BID_RANGE[1], strict=True)  # null: bid
    max_queue_s: float | None = _amount(nullable=True)  # null: no deadline
    budget_usd: float | None = Field(None, ge=0, le=AMOUNT_RANGE[1], allow_inf_nan=False)
    budget_period: Literal["day", "week", "month", "total"] = Field(
        None, json_schema_extra=_no_default)
    over_budget: Literal["reject", "demote"] = Field(None, json_schema_extra=_no_default)

    @field_validator("weight", "bid", "over_limit", "budget_period", "over_budget", mode="before")
    @classmethod
    def _not_null(cls, value, info):
        if value is None:  # only when sent: an omitted field is not validated
            raise ValueError(f"cannot be null: omit {info.field_name} to keep its default (PUT) "
                             "or its value (PATCH)")
        return value


def tenant_json(t: Tenant) -> dict:
    return {"id": t.tenant_id, "weight": t.weight, "bid": t.bid, "token_rate": t.token_rate,
            "token_burst": t.token_burst, "request_rate": t.request_rate,
            "request_burst": t.request_burst, "max_concurrent": t.max_concurrent,
            "over_limit": t.over_limit.value, "max_bid": t.entitled_bid,
            "max_queue_s": t.max_queue_s, "budget_usd": t.budget_usd,
            "budget_period": t.budget_period, "over_budget": t.over_budget.value}


class KeyFields(BaseModel):
    """What a new key may do: it may expire, be limited to some models, cap bids below its
    tenant's."""
    model_config = ConfigDict(extra="forbid")
    expires: str | None = Field(None, description="an age like 30d, an ISO date, or unix seconds")
    models: list[str] | None = Field(None, min_length=1)
    max_bid: int | None = Field(None, ge=BID_RANGE[0], le=BID_RANGE[1], strict=True)


def key_json(k) -> dict:
    return {"prefix": k.prefix, "tenant_id": k.tenant_id, "created_at": k.created_at,
            "revoked_at": k.revoked_at, "expires_at": k.expires_at,
            "models": None if k.models is None else list(k.models), "max_bid": k.max_bid}


@router.get("/tenants")
async def list_tenants(http: HttpRequest):
    gw = http.app.state.gateway
    return {"data": [tenant_json(t) for t in gw.store.tenants()]}


@router.get("/tenants/{tenant_id}")
async def get_tenant(tenant_id: str, http: HttpRequest):
    gw = http.app.state.gateway
    tenant = gw.store.tenant(tenant_id)
    if tenant is None:
        raise ApiError(404, f"no tenant {tenant_id!r}", "not_found")
    return {**tenant_json(tenant), "budget": await gw.budgets.view(tenant_id)}


@router.put("/tenants/{tenant_id}")
async def put_tenant(tenant_id: str, body: TenantFields, http: HttpRequest):
    gw = http.app.state.gateway
    fields = body.model_dump(exclude_none=True)
    try:
        tenant = Tenant(tenant_id, **fields)
        created = gw.store.put_tenant(tenant)
    except ConfigError as exc:
        raise ApiError(400, str(exc), "invalid_tenant") from None
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
async def create_key(tenant_id: str, http: HttpRequest, body: KeyFields | None = None):
    gw = http.app.state.gateway
    body = body or KeyFields()
    if gw.store.tenant(tenant_id) is None:
        raise ApiError(404, f"no tenant {tenant_id!r}", "not_found")
    try:
        expires_at = parse_time(body.expires, time.time(), ahead=True)
        key = gw.store.create_key(tenant_id, expires_at=expires_at, models=body.models,
                                  max_bid=body.max_bid)
    except StoreError as exc:
        raise ApiError(400, str(exc), "invalid_request") from None
    gw.reload()  # here at once; other replicas within store.reload_s
    return {"tenant_id": tenant_id, "key": key, "prefix": key_label(key),
            "expires_at": expires_at, "models": body.models, "max_bid": body.max_bid,
            "note": "store this key now: only its hash is kept"}


@router.get("/keys")
async def list_keys(http: HttpRequest, tenant: str | None = None):
    keys = http.app.state.gateway.store.keys(tenant)
    return {"data": [key_json(k) for k in keys]}


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


_LIMIT = Query(None, ge=1, le=MAX_USAGE_ROWS, description="at most this many rows")


def _times(since: str | None, until: str | None) -> tuple[float | None, float | None]:
    try:
        now = time.time()
        return parse_time(since, now), parse_time(until, now)
    except StoreError as exc:
        raise ApiError(400, str(exc), "invalid_request") from None
    except (ValueError, OverflowError) as exc:  # a date the platform cannot convert
        raise ApiError(400, f"cannot read the time: {exc}", "invalid_request") from None


@router.get("/usage")
async def usage(http: HttpRequest, tenant: str | None = None, since: str | None = None,
                until: str | None = None, limit: int | None = _LIMIT,
                format: Literal["json", "csv"] = "json"):
    gw = http.app.state.gateway
    start, end = _times(since, until)
    rows = gw.store.usage(tenant, start, end, limit)
    if format == "csv":
        return Response(usage_csv(rows), media_type="text/csv")
    return {"data": rows}


@router.get("/usage/summary")
async def usage_summary(http: HttpRequest, tenant: str | None = None, since: str | None = None,
                        until: str | None = None):
    gw = http.app.state.gateway
    return {"data": gw.store.usage_totals(tenant, *_times(since, until))}
