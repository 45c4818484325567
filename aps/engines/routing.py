"""Which replica gets a request: round-robin, least outstanding tokens, or prefix affinity.

A router only orders the candidates; the pool takes the first one that is available and has
room. So every router falls back the same way when its first choice is full or down.

Prefix affinity sends requests that share a prompt prefix to the same replica, where the
engine's prefix cache already holds it. A consistent-hash ring (many virtual points per
replica) keeps most prefixes where they were when a replica joins or leaves.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
from typing import Protocol, Sequence

ROUTERS = ("round-robin", "least-outstanding-tokens", "prefix-affinity")
PREFIX_CHARS = 256  # the part of a prompt that picks its replica
VIRTUAL_POINTS = 64  # points per replica on the ring: spreads keys evenly


class Routed(Protocol):
    url: str
    num_tokens_in_flight: int


def stable_hash(text: str) -> int:
    """A hash that is the same in every process (Python's `hash` of a str is salted)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, names: Sequence[str], points: int = VIRTUAL_POINTS):
        ring = sorted((stable_hash(f"{name}#{i}"), name) for name in names for i in range(points))
        self._keys = [k for k, _ in ring]
        self._names = [n for _, n in ring]

    def walk(self, key: str) -> list[str]:
        """Every name, each once, in ring order starting at `key`'s point."""
        if not self._keys:
            return []
        start = bisect.bisect(self._keys, stable_hash(key)) % len(self._keys)
        seen: dict[str, None] = {}
        for i in itertools.chain(range(start, len(self._names)), range(start)):
            seen.setdefault(self._names[i])
        return list(seen)


class Router:
    def __init__(self, kind: str, replicas: Sequence[Routed]):
        if kind not in ROUTERS:
            raise ValueError(f"routing must be one of {', '.join(ROUTERS)}, got {kind!r}")
        self.kind, self.replicas = kind, list(replicas)
        self._next = 0
        self._ring = HashRing([r.url for r in self.replicas])
        self._by_url = {r.url: r for r in self.replicas}

    def order(self, prompt: str) -> list[Routed]:
        """The replicas in the order to try them for a request with this prompt."""
        rs = self.replicas
        if self.kind == "round-robin":
            start, self._next = self._next, (self._next + 1) % len(rs)
            return rs[start:] + rs[:start]
        if self.kind == "least-outstanding-tokens":
            return sorted(rs, key=lambda r: r.num_tokens_in_flight)  # stable: ties by config order
        return [self._by_url[u] for u in self._ring.walk(prompt[:PREFIX_CHARS])]
