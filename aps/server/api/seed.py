"""The seeds' API: `/infer`, `/generate` (seed 004's, with its cache), `/health`,
`/tenants/{id}/status`."""
from __future__ import annotations

from fastapi import APIRouter, Header, Request as HttpRequest

from aps.server.api.client import max_queue_s
from aps.engines.upstream_http import UpstreamCall
from aps.server.api.schemas import GenerateBody, InferBody
from aps.server.errors import ApiError
from aps.server.gateway import Ask

router = APIRouter()


@router.post("/infer")
async def infer(body: InferBody, http: HttpRequest, authorization: str | None = Header(None),
                x_aps_max_queue_seconds: str | None = Header(None)):
    gw = http.app.state.gateway
    caller = gw.caller(authorization, body.tenant_id, keyless_ok=True)
    req, stream = await gw.submit(caller, Ask(body.prompt, body.tokens_requested,
                                              body.priority_bid, body.model,
                                              max_queue_s(x_aps_max_queue_seconds), "infer"))
    text = await gw.collect(http, req, stream)
    alpha = getattr(gw.sched.policy, "alpha", 0.0)
    return {"request_id": req.request_id, "tenant_id": caller.tenant_id, "text": text,
            "prompt_tokens": req.prompt_tokens, "completion_tokens": req.num_output_tokens,
            "queue_ms": _ms(req.queue_time), "ttft_ms": _ms(req.ttft), "latency_ms": _ms(req.e2e),
            "effective_priority": req.bid + alpha * (req.queue_time or 0.0)}


@router.post("/generate")
async def generate(body: GenerateBody, http: HttpRequest, authorization: str | None = Header(None),
                   x_aps_max_queue_seconds: str | None = Header(None)):
    """Greedy decoding (temperature 0): with `cache: {enabled: true}` a repeated prompt is
    answered from the response cache, on the simulated GPU as in front of upstream servers."""
    gw = http.app.state.gateway
    caller = gw.caller(authorization)
    call = UpstreamCall(False, {"prompt": body.prompt, "max_tokens": body.max_tokens,
                                "temperature": 0}, body.prompt)
    req, stream = await gw.submit(caller, Ask(body.prompt, body.max_tokens, None, body.model,
                                              max_queue_s(x_aps_max_queue_seconds), "gen", call))
    text = await gw.collect(http, req, stream)
    return {"request_id": req.request_id, "model": req.model, "text": text,
            "cached": req.reason == "cached", "prompt_tokens": req.prompt_tokens,
            "completion_tokens": req.num_output_tokens, "queue_ms": _ms(req.queue_time),
            "ttft_ms": _ms(req.ttft), "latency_ms": _ms(req.e2e)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@router.get("/health")
async def health(http: HttpRequest):
    gw = http.app.state.gateway
    return {"status": "ok" if gw.driver.accepting else "draining", "model": gw.backend.model_name,
            "policy": gw.sched.policy.name, "running": gw.sched.num_running,
            "waiting": gw.sched.num_waiting, "demo": gw.directory.demo}


@router.get("/tenants/{tenant_id}/status")
async def tenant_status(tenant_id: str, http: HttpRequest,
                        authorization: str | None = Header(None)):
    gw = http.app.state.gateway
    tenant = gw.caller(authorization, None if authorization else tenant_id,
                       keyless_ok=True).tenant_id
    if tenant != tenant_id:  # another tenant's status: say nothing, not even that it exists
        raise ApiError(404, f"no tenant {tenant_id!r}", "not_found")
    state, now = gw.sched.tenants[tenant], gw.driver.now()
    config = gw.directory.tenants.get(tenant, state.tenant)
    bucket = state.tokens  # None in cluster mode: the shared bucket is in Redis
    return {"tenant_id": tenant, "weight": config.weight, "bid": config.bid,
            "max_bid": config.entitled_bid, "max_queue_s": config.max_queue_s,
            "token_rate": config.token_rate, "token_burst": config.token_burst,
            "tokens_available": bucket.refill(now) if bucket else None,
            "in_flight": state.num_in_flight, "throttled": len(state.throttled),
            "service_tokens": gw.sched.service_tokens.get(tenant, 0),
            "budget": await gw.budgets.view(tenant)}
