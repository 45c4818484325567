"""The pure scheduling core: no I/O, no asyncio, no wall clock; `now` is always an argument."""
from aps.core.batch import BatchConfig, StepPlan, StopReason
from aps.core.bucket import TokenBucket
from aps.core.errors import (ApsError, ConfigError, InvalidRequest, NeverFits, UnknownRequest,
                             UnknownTenant)
from aps.core.kv import BlockManager
from aps.core.limits import Verdict
from aps.core.policies import POLICIES, Policy, make_policy
from aps.core.request import Request, Status
from aps.core.scheduler import Scheduler
from aps.core.tenant import OverLimit, Tenant

__all__ = [
    "ApsError", "BatchConfig", "BlockManager", "ConfigError", "InvalidRequest", "NeverFits",
    "OverLimit", "POLICIES", "Policy", "Request", "Scheduler", "Status", "StepPlan", "StopReason",
    "Tenant", "TokenBucket", "UnknownRequest", "UnknownTenant", "Verdict", "make_policy",
]
