"""Micro-batching (the seed documents): gather requests for a window or until `max_batch`,
admit those whose whole lifetime fits the KV cache, and run that batch to completion.

With `adaptive_window`, the entropy governor sets the window from recent arrivals. With
`batch_above_utilization`, the window applies only while the GPU has been busy: below that share
of the last second, a request is dispatched at once (waiting to batch would only add latency).
Given a list as `batch_log`, every batch formed is recorded there (the governor's telemetry).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aps.core.batch import StepPlan, StopReason
from aps.core.batching.base import Admission, SchedulerState
from aps.core.batching.governor import EntropyWindow
from aps.core.request import Request

RECENT_S = 1.0  # the span `batch_above_utilization` measures the GPU's busy share over


@dataclass(slots=True, frozen=True)
class BatchRecord:
    """One batch as it was formed."""

    t: float
    entropy_bits: float  # of the recent inter-arrival times, whether or not the governor acts
    window_s: float  # the window that applied
    requests: int
    tokens: int  # prompt + max_tokens of its requests: the KV it reserves
    kv_share: float  # tokens / the KV capacity in tokens
    kv_used: float  # the share of KV blocks in use once it was admitted


class MicroBatching(Admission):
    def __init__(self, sched: SchedulerState):
        super().__init__(sched)
        b = sched.batch
        self.entropy = EntropyWindow(b.window_s)  # watched always, for the batch log
        self.governor = self.entropy if b.adaptive_window else None
        self.batch_log: list[BatchRecord] | None = None
        self._window_opened: float | None = None  # when the first request of the batch queued
        self._batch: list[Request] = []  # the batch running now (or that ran last)
        self._batch_started = 0.0
        self._busy: deque[tuple[float, float]] = deque()  # recent batches: (start, end)

    def note_arrival(self, now: float) -> None:
        self.entropy.observe(now)

    def note_queued(self, now: float) -> None:
        if self._window_opened is None:
            self._window_opened = now

    def schedule(self, plan: StepPlan, now: float) -> StopReason:
        s = self.sched
        if s.running:
            plan.scheduled.extend((r, r.num_pending_tokens) for r in s.running)
            return StopReason.BATCH_RUNNING
        self._close_batch(now)
        if not s.policy:
            self._window_opened = None
            return StopReason.NO_WAITING
        window = self.window(now)
        deadline = self._window_opened + window
        if len(s.policy) < s.batch.max_batch and now < deadline:
            plan.next_wakeup = deadline
            return StopReason.WINDOW
        reason = self._form_batch(plan, now)
        self._window_opened = now if s.policy else None
        if self.batch_log is not None and self._batch:
            self._log(now, window)
        return reason

    def _log(self, now: float, window: float) -> None:
        s = self.sched
        tokens = sum(r.prompt_tokens + r.max_tokens for r in self._batch)
        self.batch_log.append(BatchRecord(
            now, self.entropy.entropy_bits(), window, len(self._batch), tokens,
            tokens / s.batch.kv_capacity_tokens, s.kv.num_used_blocks / s.kv.num_blocks))

    def window(self, now: float) -> float:
        """How long the first queued request waits for others to join it."""
        b = self.sched.batch
        if b.batch_above_utilization is not None and \
                self.utilization(now) < b.batch_above_utilization:
            return 0.0
        return self.governor.window() if self.governor else b.window_s

    def utilization(self, now: float) -> float:
        """The share of the last `RECENT_S` seconds the GPU spent running batches."""
        if not self.sched.running:
            self._close_batch(now)
        since = now - RECENT_S
        while self._busy and self._busy[0][1] <= since:
            self._busy.popleft()
        spans = [*self._busy, (self._batch_started, now)] if self.sched.running else self._busy
        busy = sum(min(end, now) - max(start, since) for start, end in spans)
        return min(1.0, max(0.0, busy / RECENT_S))

    def _close_batch(self, now: float) -> None:
        """The batch that ran has ended: keep its busy span (it ended with its last request)."""
        if self._batch:
            end = max((r.finished for r in self._batch if r.finished is not None), default=now)
            self._busy.append((self._batch_started, end))
            self._batch = []

    def _form_batch(self, plan: StepPlan, now: float) -> StopReason:
        """Admit up to `max_batch` requests whose whole lifetime fits the KV cache."""
        s = self.sched
        policy, kv = s.policy, s.kv
        self._batch_started = now
        while policy:
            if len(s.running) >= s.batch.max_batch:
                return StopReason.MAX_SEQS
            head = policy.peek()
            total = head.prompt_tokens + head.max_tokens
            if not kv.can_allocate(head.request_id, total):
                return StopReason.KV_CACHE
            policy.pop()
            s.start(head, now)
            kv.allocate(head.request_id, total)
            plan.scheduled.append((head, head.num_pending_tokens))
            self._batch.append(head)
        return StopReason.NO_WAITING
