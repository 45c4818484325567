"""Running the gateway under uvicorn, with a drain on SIGTERM.

The first SIGTERM or SIGINT stops admitting requests (new ones get 503), lets in-flight ones
finish for up to `drain_timeout_s`, then exits; a second one exits at once.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from pathlib import Path

import uvicorn

from aps.core import ConfigError
from aps.server.app import create_app
from aps.server.config import DEMO_TENANTS, ServerConfig
from aps.server.connections import ConnectionLimits, guarded_protocol
from aps.store import StoreError, open_store, redact

log = logging.getLogger("aps.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, gateway, drain_timeout_s: float):
        super().__init__(config)
        self.gateway, self.drain_timeout_s = gateway, drain_timeout_s
        self._draining = False

    def handle_exit(self, sig, frame) -> None:
        if self._draining:
            return super().handle_exit(sig, frame)
        self._draining = True
        log.warning("draining: refusing new requests, waiting up to %.0f s for %d in flight",
                    self.drain_timeout_s, len(self.gateway.sched.requests))
        asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        """Let requests finish until the deadline; cancel the rest, whose clients then hear why
        (an error in the API's shape, or an SSE error event) and whose ledger rows are written;
        only then stop the server, so no stream is cut mid-body."""
        gw = self.gateway
        cancelled = await gw.driver.drain(self.drain_timeout_s)
        if cancelled:
            log.warning("drain timeout: %d requests cancelled (server_shutting_down)", cancelled)
        await gw.ledger.settled()
        self.should_exit = True  # uvicorn lets the handlers write their last words first


def fit_descriptors(max_connections: int, spare: int = 256) -> int:
    """Raise the process's open-file limit to hold `max_connections` (plus `spare` for the
    database, upstream connections, logs); if the hard limit is lower, lower the cap instead,
    and say so: running out of descriptors would stop the server answering anyone."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - spare)
        log.warning("limits.max_connections %d needs %d open files; the limit is %d: capping "
                    "connections at %d", max_connections, wanted, soft, fitted)
        return fitted
    return max_connections


def keyless_tenants(config: ServerConfig) -> set[str]:
    """The tenants the gateway would serve without a key: the demo tenants in its database, or
    those demo seeding would create in a new one."""
    if not config.store.url and not Path(config.store.path).exists():
        return set() if config.tenants else {t.id for t in DEMO_TENANTS}
    store = open_store(config.store.target, timeout_s=config.store.db_timeout_s)
    try:
        if not store.tenants():
            return set() if config.tenants else {t.id for t in DEMO_TENANTS}
        return store.demo_tenants()
    finally:
        store.close()


def serve(config: ServerConfig, force: bool = False) -> None:
    try:
        keyless = keyless_tenants(config)
    except StoreError as exc:  # the database the configuration names cannot be used
        raise ConfigError(str(exc)) from None
    if keyless and not is_loopback(config.host) and not force:
        raise ConfigError(
            f"refusing to serve on {config.host}: the demo tenants ({', '.join(sorted(keyless))}) "
            f"take requests without a key. Remove them (aps tenants remove NAME --db "
            f"{config.store.shown}) and configure tenants with keys, or serve on 127.0.0.1")
    app = create_app(config)
    gateway = app.state.gateway
    demo = sorted(gateway.directory.demo_tenants)
    if demo:
        keys = [f"{t.id}: {t.keys[0]}" for t in DEMO_TENANTS
                if t.id in demo and gateway.directory.lookup(t.keys[0]) is not None]
        log.warning("demo tenants %s take requests without a key%s", ", ".join(demo),
                    f"; their keys: {', '.join(keys)}" if keys else "")
    if config.upstreams:
        engine = f"{len(config.upstreams)} upstream server(s): " + \
            ", ".join(f"{u.url} ({u.model}, {u.max_in_flight} seats)" for u in config.upstreams)
    else:
        engine = (f"{gateway.backend.model_name} on simulated {config.gpu} (speed "
                  f"x{config.speed:g}, {gateway.sched.batch.max_num_seqs} seats)")
    log.warning("APS on http://%s:%d: %s, policy %s, database %s%s", config.host, config.port,
                engine, config.policy, config.store.shown,
                f", Redis {redact(config.store.redis_url)}" if config.store.redis_url else "")
    limits = config.limits
    connections = ConnectionLimits(fit_descriptors(limits.max_connections),
                                   limits.header_timeout_s, limits.max_header_bytes,
                                   limits.max_url_bytes)
    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level="info",
                        http=guarded_protocol(connections),
                        timeout_keep_alive=limits.idle_timeout_s,
                        timeout_graceful_shutdown=1,  # the drain happened before
                        access_log=False)
    server = DrainingServer(uv, gateway, config.drain_timeout_s)
    server.run()
    if not server.started:  # uvicorn has logged why (the port is taken, ...)
        raise SystemExit(1)
