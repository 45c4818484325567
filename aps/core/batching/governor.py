"""The homeostatic governor (from the seed documents): adapt the micro-batch window to how
predictable arrivals are.

    w = w_base * exp(-H / 5)

where H is the Shannon entropy, in bits, of the recent inter-arrival intervals binned at 1 ms.
Regular arrivals (low H) keep a long window: waiting is likely to fill the batch. Irregular ones
(high H) shrink it: waiting is a gamble, so dispatch sooner. Whether this beats a fixed window
is a question for measurement, not faith; `aps experiment governor` measures it.
"""
from __future__ import annotations

import math
from collections import Counter, deque

from aps.core.errors import ConfigError


class EntropyWindow:
    def __init__(self, base_window_s: float = 0.010, history: int = 64, bin_s: float = 0.001):
        if base_window_s < 0 or history < 2 or bin_s <= 0:
            raise ConfigError("governor: base window >= 0, history >= 2 and bin > 0 required")
        self.base_window_s = base_window_s
        self.bin_s = bin_s
        self._bins: deque[int] = deque(maxlen=history - 1)
        self._counts: Counter[int] = Counter()
        self._last: float | None = None

    def observe(self, arrival: float) -> None:
        if self._last is not None:
            if len(self._bins) == self._bins.maxlen:
                old = self._bins[0]
                self._counts[old] -= 1
                if not self._counts[old]:
                    del self._counts[old]
            b = int(max(0.0, arrival - self._last) / self.bin_s + 1e-9)  # 2 ms is bin 2, not 1.999
            self._bins.append(b)
            self._counts[b] += 1
        self._last = arrival

    def entropy_bits(self) -> float:
        n = len(self._bins)
        if n == 0:
            return 0.0
        return -sum(c / n * math.log2(c / n) for c in self._counts.values())

    def window(self) -> float:
        return self.base_window_s * math.exp(-self.entropy_bits() / 5.0)
