"""What the simulator's event heap holds (arrivals are read in order from the workload).

The autoscaler's events come after the replicas' own: the loop tells them apart with one
comparison, `kind > KICK`, and they never move the clock of the work."""
from enum import IntEnum


class Event(IntEnum):
    END = 0  # a replica's iteration, or fast-forwarded run of iterations, ends
    KICK = 1  # a replica should step: a request arrived, a window closes, a request is released
    TICK = 2  # the autoscaler looks at the cluster
    READY = 3  # a replica that was starting becomes routable

