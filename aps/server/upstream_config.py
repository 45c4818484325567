"""The configuration of upstream servers behind the gateway (part of `ServerConfig`):

    upstreams:
      - {url: http://127.0.0.1:8000, model: tiny, max_in_flight: 64,
         max_tokens_in_flight: 65536, priority: false, capacity_from_metrics: false,
         api_key: null}
    routing: least-outstanding-tokens   # or round-robin, prefix-affinity
    retries: 2                          # tries elsewhere for a failure before the first token
    breaker: {failures: 3, cooldown_s: 10}
    timeouts: {connect_s: 5, stall_s: 30, response_s: 600}   # a dead or stalled replica
    health_interval_s: 2

With no upstreams the gateway runs the simulated GPU.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aps.engines.breaker import CircuitBreaker
from aps.engines.upstream import Replica, Timeouts


class UpstreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    model: str = Field(min_length=1)
    max_in_flight: int = Field(64, ge=1)
    max_tokens_in_flight: int = Field(65536, ge=1)
    priority: bool = False  # pass the request's priority on (vLLM --scheduling-policy priority)
    capacity_from_metrics: bool = False  # max_tokens_in_flight from vLLM's /metrics
    api_key: str | None = None  # the server's key, if it asks for one

    @field_validator("url")
    @classmethod
    def _root_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {url!r}")
        url = url.rstrip("/")
        return url.removesuffix("/v1")  # the server's root: /health and /v1/... hang off it


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    failures: int = Field(3, ge=1)
    cooldown_s: float = Field(10.0, gt=0)


class TimeoutConfig(BaseModel):
    """How long to wait for a replica before giving up on it (see engines.upstream.Timeouts)."""
    model_config = ConfigDict(extra="forbid")
    connect_s: float = Field(5.0, gt=0, allow_inf_nan=False)
    stall_s: float = Field(30.0, gt=0, allow_inf_nan=False)  # between a stream's tokens
    response_s: float = Field(600.0, gt=0, allow_inf_nan=False)  # a whole plain answer

    def make(self) -> Timeouts:
        return Timeouts(self.connect_s, self.stall_s, self.response_s)


Routing = Literal["round-robin", "least-outstanding-tokens", "prefix-affinity"]


def make_replicas(upstreams: list[UpstreamConfig], breaker: BreakerConfig) -> list[Replica]:
    return [Replica(u.url, u.model, u.max_in_flight, u.max_tokens_in_flight, u.priority,
                    u.capacity_from_metrics, u.api_key,
                    CircuitBreaker(breaker.failures, breaker.cooldown_s))
            for u in upstreams]
