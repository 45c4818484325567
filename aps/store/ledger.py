"""The usage ledger as the gateway writes it: one row per ended request, committed before the
client hears that its request ended.

Group commit: `record` (the runtime's end-of-request hook) queues the row, and one commit per
event-loop turn writes every row queued in it. A handler awaits `settled()` before it tells
its client the request ended (the response body, or the stream's last event), so an
acknowledged request's row is in the database file (SQLite WAL: it survives the process being
killed), while rows still cost one commit per batch, not per request. If the database refuses
a write (disk full, locked too long), the rows are kept and written with the next batch:
nothing is dropped while the process lives, and the backlog is a metric.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

from aps.core import Request, Status
from aps.store.sqlite import Store

log = logging.getLogger("aps.ledger")
RECORDED = (Status.FINISHED, Status.FAILED, Status.CANCELLED, Status.EXPIRED)


class Ledger:
    """The cost of a row is the request's own price (set when it was submitted) times what it
    used: a request that never started is billed no prompt."""

    def __init__(self, store: Store, monotonic_to_unix, bill_cached: bool = False):
        self.store = store
        self._unix = monotonic_to_unix  # runtime time -> unix seconds
        self.bill_cached = bill_cached  # a response from the cache costs its price too
        self.pending: list[tuple] = []
        self._batch: asyncio.Future | None = None  # resolved when the queued rows are written

    def row(self, req: Request, key_prefix: str, model: str) -> tuple:
        unix = self._unix
        started = req.first_scheduled is not None
        billed_prompt = req.prompt_tokens if started else 0
        free = req.reason == "cached" and not self.bill_cached
        return (req.request_id, req.tenant_id, key_prefix, model, req.bid, unix(req.arrival),
                None if req.first_token is None else unix(req.first_token),
                unix(req.finished if req.finished is not None else req.arrival),
                req.prompt_tokens, req.num_output_tokens, req.status.value, req.reason,
                0.0 if free else req.cost_usd(billed_prompt, req.num_output_tokens))

    def record(self, req: Request, key_prefix: str, model: str) -> None:
        if req.status not in RECORDED:
            return
        self.pending.append(self.row(req, key_prefix, model))
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            loop.call_soon(self._commit_batch)

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, None
        self.flush()
        batch.set_result(None)

    async def settled(self) -> None:
        """Return once every row recorded so far has been committed (or its write failed and
        it was kept to retry)."""
        if self._batch is not None:
            await asyncio.shield(self._batch)

    def flush(self) -> bool:
        if not self.pending:
            return True
        try:
            self.store.record(self.pending)
        except sqlite3.Error as exc:
            log.error("usage ledger write failed, %d rows kept to retry: %s", len(self.pending), exc)
            return False
        self.pending.clear()
        return True


def unix_clock(runtime_now) -> callable:
    """Map runtime time (monotonic seconds since start) to unix seconds."""
    offset = time.time() - runtime_now()
    return lambda t: offset + t
