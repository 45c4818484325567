"""Micro-batching (the seed documents): gather requests for a window or until `max_batch`,
admit those whose whole lifetime fits the KV cache, and run that batch to completion.

With `adaptive_window`, the entropy governor sets the window from recent arrivals.
"""
from __future__ import annotations

from aps.core.batch import StepPlan, StopReason
from aps.core.batching.base import Admission, SchedulerState
from aps.core.batching.governor import EntropyWindow


class MicroBatching(Admission):
    def __init__(self, sched: SchedulerState):
        super().__init__(sched)
        b = sched.batch
        self.governor = EntropyWindow(b.window_s) if b.adaptive_window else None
        self._window_opened: float | None = None  # when the first request of the batch queued

    def note_arrival(self, now: float) -> None:
        if self.governor is not None:
            self.governor.observe(now)

    def note_queued(self, now: float) -> None:
        if self._window_opened is None:
            self._window_opened = now

    def schedule(self, plan: StepPlan, now: float) -> StopReason:
        s = self.sched
        if s.running:
            plan.scheduled.extend((r, r.num_pending_tokens) for r in s.running)
            return StopReason.BATCH_RUNNING
        if not s.policy:
            self._window_opened = None
            return StopReason.NO_WAITING
        window = self.governor.window() if self.governor else s.batch.window_s
        deadline = self._window_opened + window
        if len(s.policy) < s.batch.max_batch and now < deadline:
            plan.next_wakeup = deadline
            return StopReason.WINDOW
        reason = self._form_batch(plan, now)
        self._window_opened = now if s.policy else None
        return reason

    def _form_batch(self, plan: StepPlan, now: float) -> StopReason:
        """Admit up to `max_batch` requests whose whole lifetime fits the KV cache."""
        s = self.sched
        policy, kv = s.policy, s.kv
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
        return StopReason.NO_WAITING
