"""Queue policies: the order in which waiting requests are admitted.

Every policy is a `Policy`: push, pop, peek, remove, len, plus `note_progress` (service a
tenant actually received, for fair share; linear in the tokens, so the tokens of several of a
tenant's requests may be noted through any one of them), `rank` (a sort key, lower runs first: priority
preemption compares a waiting request with running ones by it) and `preempt_key` (when KV
memory runs out, the running request with the largest key is preempted).

Heap-based policies give each request a time-invariant key, so a heap stays exact without
re-heapifying. Removal is lazy: a removed entry is blanked and skipped when it surfaces.
"""
from __future__ import annotations

import heapq
import itertools
from typing import Protocol

from aps.core.request import Request


class Policy(Protocol):
    name: str

    def push(self, req: Request) -> None: ...
    def pop(self) -> Request: ...
    def peek(self) -> Request | None: ...
    def remove(self, req: Request) -> bool: ...
    def __len__(self) -> int: ...
    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None: ...
    def rank(self, req: Request) -> tuple: ...
    def preempt_key(self, req: Request) -> tuple: ...
    def heads(self) -> list[Request]: ...
    def sibling(self) -> "Policy": ...


class KeyedHeap:
    """A heap of requests ordered by `_key(req)`, ties broken by push order.

    Entries are flat tuples `(key..., seq, req)` so that comparisons stay in C. A removed
    request's seq goes into `_removed`; its entry is dropped when it surfaces.
    """

    name = "keyed"

    def __init__(self) -> None:
        self._heap: list[tuple] = []
        self._removed: set[int] = set()
        self._seq = itertools.count()
        self._len = 0

    def _entry(self, req: Request, seq: int) -> tuple:
        raise NotImplementedError

    def push(self, req: Request) -> None:
        seq = req.queue_seq = next(self._seq)
        heapq.heappush(self._heap, self._entry(req, seq))
        self._len += 1

    def pop(self) -> Request:
        self._skip_removed()
        if not self._heap:
            raise IndexError("pop from an empty queue")
        self._len -= 1
        req = heapq.heappop(self._heap)[-1]
        req.queue_seq = -1
        return req

    def _skip_removed(self) -> None:
        heap, removed = self._heap, self._removed
        while removed and heap and heap[0][-2] in removed:
            removed.discard(heapq.heappop(heap)[-2])

    def peek(self) -> Request | None:
        self._skip_removed()
        return self._heap[0][-1] if self._heap else None

    def remove(self, req: Request) -> bool:
        """Remove a request pushed here (False if it is not waiting in this queue)."""
        if req.queue_seq < 0:
            return False
        self._removed.add(req.queue_seq)
        req.queue_seq = -1
        self._len -= 1
        return True

    def __len__(self) -> int:
        return self._len

    def note_progress(self, req: Request, prefill_tokens: int, decode_tokens: int) -> None:
        pass

    def rank(self, req: Request) -> tuple:
        return self._entry(req, 0)[:-2]

    def preempt_key(self, req: Request) -> tuple:
        # the last-ranked request: with arrival the last key, the newest, as vLLM preempts
        return self.rank(req)

    def heads(self) -> list[Request]:
        """Every request that could be popped next as service is recorded: keys are fixed."""
        head = self.peek()
        return [] if head is None else [head]

    def sibling(self) -> "KeyedHeap":
        """An empty queue that orders as this one does (this one keeps no shared state)."""
        return type(self)()


class Partitioned:
    """A queue made of sub-queues, one per partition key (a tenant, a priority class)."""

    def __init__(self) -> None:
        self._parts: dict = {}
        self._len = 0

    def _key_of(self, req: Request):
        raise NotImplementedError

    def remove(self, req: Request) -> bool:
        part = self._parts.get(self._key_of(req))
        if part is None or not part.remove(req):
            return False
        self._len -= 1
        return True

    def __len__(self) -> int:
        return self._len



def add_service(policy: Policy, tenant: str, cost: float) -> None:
    """Count service a tenant received elsewhere (another gateway replica) in a fair-share
    policy's counter, in the policy's own units. A no-op for policies without counters."""
    add = getattr(policy, "add_service", None)
    if add is not None:
        add(tenant, cost)
