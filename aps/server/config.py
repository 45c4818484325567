"""Server configuration: one YAML file plus `APS_*` environment variables, with demo defaults.

    host: 127.0.0.1          # APS_HOST
    port: 8002               # APS_PORT
    policy: aps              # APS_POLICY
    policy_params: {alpha: 0.1}
    model: llama-3-8b        # APS_MODEL
    gpu: a100-80gb           # APS_GPU
    speed: 1.0               # APS_SPEED: the simulated GPU runs this many times faster than real time
    batch: {max_num_seqs: 256, max_num_batched_tokens: 8192, max_waiting: 10000}
                             # (with no `tenants:`, the demo, max_num_seqs is 32: see below)
    max_body_bytes: 1048576  # counted as it arrives, chunked or not; over it: 413
    limits:                  # per connection, before a request reaches the app (connections.py)
      max_connections: 4096  # open at once; more get a 503 and a line in the log
      header_timeout_s: 10   # for a request's head to arrive; a slow one gets a 408
      idle_timeout_s: 5      # between requests on a kept-alive connection
      max_header_bytes: 65536  # over: 431
      max_url_bytes: 8192    # over: 414
    drain_timeout_s: 30      # APS_DRAIN_TIMEOUT_S
    admin_key: null          # APS_ADMIN_KEY: enables the /admin API
    metrics_key: null        # APS_METRICS_KEY: a scraper with it (or the admin key) sees the
                             #   tenant-labelled series of /metrics; others see the rest
    prices: {input_per_1m: 0.0, output_per_1m: 0.0}   # dollars per 1M tokens: the ledger's cost and
                             # the budgets; a model's own: {MODEL: {input_per_1m, output_per_1m}}
    store:
      path: aps.db           # APS_DB: tenants, keys and the usage ledger (SQLite)
      url: null              # APS_DATABASE_URL: postgresql://user@host/db instead of `path`, for
                             #   replicas on several hosts (docs/replicas.md)
      reload_s: 1.0          # how often to pick up changes made by `aps tenants|keys`, anywhere
      db_timeout_s: 2.0      # PostgreSQL: a call (a ledger commit) slower than this counts as down
      ledger_buffer_rows: 100000   # ledger rows kept in memory while the database is down
      ledger_full: reject    # buffer full: `reject` new requests (503) or `serve` and drop rows
      redis_url: null        # APS_REDIS_URL: share limits and fair-share counters between replicas
      redis_down: local      # or `closed`: refuse requests (503) while Redis is unreachable
    tenants:
      - {id: acme, keys: [sk-acme-1], weight: 2, bid: 8, token_rate: 5000, token_burst: 50000,
         request_rate: 20, max_concurrent: 64, over_limit: reject,
         max_bid: 9,                       # the highest bid its clients may ask for
         max_queue_s: 30,                  # how long a request may wait to start
         budget_usd: 500, budget_period: month, over_budget: reject}   # or demote
    upstreams:               # real OpenAI-compatible servers instead of the simulated GPU
      - {url: http://127.0.0.1:8000, model: tiny, max_in_flight: 64, max_tokens_in_flight: 65536}
    routing: least-outstanding-tokens      # the rest: aps/server/upstream_config.py
    aliases: {gpt-4o-mini: tiny}           # a public name for a served model
    cache: {enabled: false, ttl_s: 300, max_bytes: 67108864, bill_hits: false}  # answers to
                             # temperature-0 requests, per tenant: docs/gateway.md
    autoscale: {min: 1, max: 8, target_queue: 8, slo_ttft_s: 2.0}  # the aps:desired_replicas
                             # signal; every field: aps/core/autoscale.py

Tenants and keys live in the database; `tenants:` (or, with none configured, the seeds' three
demo tenants and their keys `sk-demo-<tenant>`) only fills an empty database on first start.
After that `aps tenants|keys` and the /admin API change them, and a running server picks the
changes up within `store.reload_s`. The demo tenants, and only they, may also be called without
a key (`/infer` naming its tenant); while every tenant is a demo tenant (demo mode) per-tenant
metrics are public too. A tenant added later, by the CLI or the API, always needs its key.
The demo's simulated GPU takes 32 requests at a time unless `batch.max_num_seqs` says
otherwise, so that the seeds' stress test (`aps stress`, 100 requests at once) has to queue and
the bids decide who waits; with 256 seats every request would run at once and no policy would
matter.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from aps.core import BatchConfig, ConfigError, OverLimit, Tenant
from aps.core.autoscale import AutoscaleConfig, parse_autoscale
from aps.engines.cache import ResponseCache
from aps.server.upstream_config import BreakerConfig, Routing, TimeoutConfig, UpstreamConfig
from aps.store.urls import is_url, redact


class TenantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1)
    keys: list[str] = []
    weight: float = 1.0
    bid: int = 5
    token_rate: float | None = None
    token_burst: float | None = None
    request_rate: float | None = None
    request_burst: float | None = None
    max_concurrent: int | None = None
    over_limit: OverLimit = OverLimit.REJECT
    max_bid: int | None = None
    max_queue_s: float | None = None
    budget_usd: float | None = None
    budget_period: str = "month"
    over_budget: OverLimit = OverLimit.REJECT

    def tenant(self) -> Tenant:
        """The core's tenant (its own checks name the field at fault)."""
        return Tenant(self.id, **self.model_dump(exclude={"id", "keys"}))


# The seeds' tenants and their token limits (tokens/s, burst).
DEMO_SEATS = 32  # the demo's batch: the seeds' stress test must queue for bids to matter
DEMO_TENANTS = [
    TenantConfig(id="tenant_a", keys=["sk-demo-tenant_a"], bid=10, token_rate=500, token_burst=5000),
    TenantConfig(id="tenant_b", keys=["sk-demo-tenant_b"], bid=5, token_rate=300, token_burst=3000),
    TenantConfig(id="tenant_c", keys=["sk-demo-tenant_c"], bid=1, token_rate=1000, token_burst=10000),
]


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "aps.db"
    url: str | None = None  # PostgreSQL, instead of the file at `path`
    reload_s: float = Field(1.0, gt=0)
    db_timeout_s: float = Field(2.0, gt=0, le=60)
    ledger_buffer_rows: int = Field(100_000, ge=1, le=100_000_000)
    ledger_full: Literal["reject", "serve"] = "reject"
    redis_url: str | None = None
    redis_down: Literal["local", "closed"] = "local"
    redis_timeout_s: float = Field(0.25, gt=0)  # per command: a slow Redis counts as down
    sync_s: float = Field(0.2, gt=0)  # how often fair-share counters are shared

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and not is_url(value):  # never echo it: it may hold a password
            raise ValueError("must be a postgresql:// URL (postgresql://user@host:5432/db)")
        return value

    @property
    def target(self) -> str:
        """The database to open: the URL if there is one, else the file."""
        return self.url or self.path

    @property
    def shown(self) -> str:
        """The database as logs show it (a URL without its password)."""
        return redact(self.url) if self.url else self.path


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_connections: int = Field(4096, ge=1, le=1_000_000)
    header_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    idle_timeout_s: int = Field(5, ge=1, le=3600)  # uvicorn takes whole seconds
    max_header_bytes: int = Field(65536, ge=1024, le=16 << 20)
    max_url_bytes: int = Field(8192, ge=256, le=16 << 20)


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_per_1m: float = Field(0.0, ge=0, allow_inf_nan=False)  # dollars per 1M prompt tokens
    output_per_1m: float = Field(0.0, ge=0, allow_inf_nan=False)

    def per_token(self) -> tuple[float, float]:
        return self.input_per_1m / 1e6, self.output_per_1m / 1e6


class Prices(Price):
    """The default price, and a model's own under its served name:
    `prices: {input_per_1m: 0.1, output_per_1m: 0.2, llama-3-70b: {input_per_1m: 0.6, ...}}`."""
    model_config = ConfigDict(extra="allow")
    _models: dict[str, Price] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _per_model(self) -> "Prices":
        self._models = {name: Price.model_validate(value)
                        for name, value in (self.model_extra or {}).items()}
        return self

    def models(self) -> list[str]:
        """The served names that have their own price."""
        return list(self._models)

    def for_model(self, model: str) -> tuple[float, float]:
        """Dollars per prompt token and per output token for a served model."""
        return self._models.get(model, self).per_token()


class CacheConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    ttl_s: float = Field(300.0, gt=0)
    max_bytes: int = Field(64 << 20, gt=0)
    # A hit used no GPU: by default its ledger row costs nothing (its tokens are still counted);
    # true bills it at the prices like a request the servers ran.
    bill_hits: bool = False

    def make(self) -> ResponseCache | None:
        return ResponseCache(self.ttl_s, self.max_bytes) if self.enabled else None



class ServerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 8002
    policy: str = "aps"
    policy_params: dict[str, Any] = {}
    model: str = "llama-3-8b"
    gpu: str = "a100-80gb"
    speed: float = Field(1.0, gt=0)
    batch: dict[str, Any] = {}
    max_body_bytes: int = Field(1 << 20, gt=0)
    limits: Limits = Limits()
    drain_timeout_s: float = Field(30.0, ge=0)
    admin_key: str | None = Field(None, min_length=16)
    metrics_key: str | None = Field(None, min_length=16)
    prices: Prices = Prices()
    store: StoreConfig = StoreConfig()
    tenants: list[TenantConfig] = []
    # other names clients may use for a served model: {public name: served name}
    aliases: dict[str, str] = {}
    # Upstream servers (see aps/server/upstream_config.py); none: the simulated GPU.
    upstreams: list[UpstreamConfig] = []
    routing: Routing = "least-outstanding-tokens"
    retries: int = Field(2, ge=0)
    breaker: BreakerConfig = BreakerConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    health_interval_s: float = Field(2.0, gt=0)
    cache: CacheConfig = CacheConfig()
    autoscale: AutoscaleConfig = Field(default_factory=AutoscaleConfig)  # aps:desired_replicas

    @field_validator("autoscale", mode="before")
    @classmethod
    def _autoscale(cls, value: Any) -> AutoscaleConfig:
        if isinstance(value, AutoscaleConfig):
            return value
        try:  # the one parser a scenario's autoscale block uses too
            return parse_autoscale({} if value is None else value)
        except ConfigError as exc:  # pydantic reports a ValueError as a validation error
            raise ValueError(str(exc)) from None

    def tenant_configs(self) -> list[TenantConfig]:
        return self.tenants or DEMO_TENANTS

    def batch_config(self, kv_capacity_tokens: int) -> BatchConfig:
        if self.upstreams:  # seats and tokens are the upstreams' (seats follow their health)
            seats = sum(u.max_in_flight for u in self.upstreams)
            # 1 seat in 16 only for a tenant with nothing running, so a newcomer starts at once;
            # none below 16 seats, where one such seat is over 1/16 of the servers and idles
            # whenever every waiting request's tenant already has one running
            reserved = seats // 16
            return BatchConfig(**{"max_waiting": 10_000, "reserved_seats": reserved,
                                  **self.batch, "mode": "upstream", "block_size": 1,
                                  "max_num_seqs": seats,
                                  "kv_capacity_tokens": sum(u.max_tokens_in_flight
                                                            for u in self.upstreams)})
        seats = {} if self.tenants else {"max_num_seqs": DEMO_SEATS}
        return BatchConfig(**{"kv_capacity_tokens": kv_capacity_tokens, "max_waiting": 10_000,
                              **seats, **self.batch})


_ENV = {"APS_HOST": "host", "APS_PORT": "port", "APS_POLICY": "policy", "APS_MODEL": "model",
        "APS_GPU": "gpu", "APS_SPEED": "speed", "APS_DRAIN_TIMEOUT_S": "drain_timeout_s",
        "APS_ADMIN_KEY": "admin_key", "APS_METRICS_KEY": "metrics_key"}
_STORE_ENV = {"APS_DB": "path", "APS_DATABASE_URL": "url", "APS_REDIS_URL": "redis_url"}


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                **overrides: Any) -> ServerConfig:
    """File, then `APS_*` variables, then explicit overrides (command-line options)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("APS_CONFIG")
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the configuration: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data.update({field: env[var] for var, field in _ENV.items() if var in env})
    store = {field: env[var] for var, field in _STORE_ENV.items() if env.get(var)}
    if store:
        data["store"] = {**(data.get("store") or {}), **store}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = ServerConfig(**data)
        for t in config.tenant_configs():
            t.tenant()  # the core's own checks: bid range, positive rates, ...
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if message.startswith(f"{where}."):  # a nested parser named the key: name it once
            where, _, message = message.partition(": ")
        raise ConfigError(f"{path or 'configuration'}: field '{where}': {message}") from None
    keys = [k for t in config.tenant_configs() for k in t.keys]
    if len(keys) != len(set(keys)):
        raise ConfigError(f"{path or 'configuration'}: an API key is given to two tenants")
    return config
