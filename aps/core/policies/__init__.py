"""Queue policies: the order in which waiting requests are admitted, chosen by name.

    aps        the default: bids kept apart by linear aging, weighted fair share within a bid
    fifo       arrival order
    priority   static bid, highest first (low bids can starve)
    aging      the seeds' adaptive priority: bid plus linear aging, arrival order within a bid
    vtc        weighted fair share by virtual token counters, bids ignored
    class+vtc  strict classes by bid, fair share inside a class
"""
from __future__ import annotations

from typing import Mapping

from aps.core.errors import ConfigError
from aps.core.policies.aged import AgedFairShare
from aps.core.policies.banded import Banded
from aps.core.policies.base import KeyedHeap, Policy, add_service
from aps.core.policies.bymodel import ByModel
from aps.core.policies.fair import ClassThenVtc, VirtualTokenCounter
from aps.core.policies.priority import AdaptivePriority, Fifo, StaticPriority

POLICIES = ("aps", "fifo", "priority", "aging", "vtc", "class+vtc")


def make_policy(name: str, weights: Mapping[str, float] | None = None, **params) -> Policy:
    """Build a policy by name. `weights` maps tenant ids to fair-share weights (default 1);
    the scheduler passes its live mapping, so weight changes apply at once.

    Parameters: `aps` takes `alpha`, `w_in` and `w_out`; `aging` takes `alpha` and
    `weight_bonus` (bid points per unit of weight above 1); `vtc` and `class+vtc` take `w_in`
    and `w_out`.
    """
    try:
        if name == "fifo":
            return Fifo(**params)
        if name == "priority":
            return StaticPriority(**params)
        if name == "aps":
            return AgedFairShare(weights, **params)
        if name == "aging":
            return AdaptivePriority(weights=weights, **params)
        if name == "vtc":
            return VirtualTokenCounter(weights, **params)
        if name == "class+vtc":
            return ClassThenVtc(weights, **params)
    except TypeError as exc:
        raise ConfigError(f"policy {name!r}: bad parameters {sorted(params)}: {exc}") from None
    raise ConfigError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


__all__ = ["AdaptivePriority", "AgedFairShare", "Banded", "ByModel", "ClassThenVtc", "Fifo", "KeyedHeap", "POLICIES", "Policy",
           "StaticPriority", "VirtualTokenCounter", "add_service", "make_policy"]
