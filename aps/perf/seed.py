"""The seed documents' toy A100, kept so their claims can be replayed.

Prefill runs at 1024 tokens/s; a decode iteration of `b` requests produces `b` tokens at
`128 * (0.4 + 0.6 * sqrt(b))` tokens/s (batching helps sub-linearly); $3.00 per hour; room for
32,768 tokens of KV cache. It has no model and no FLOPs: context length does not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from aps.perf.base import BatchShape, DecodeTerms

SEED_NAME = "seed-a100"


@dataclass(slots=True)
class SeedModel:
    name: str = SEED_NAME
    tp: int = 1
    prefill_tokens_per_s: float = 1024.0
    decode_tokens_per_s: float = 128.0
    price: float = 3.00
    kv_tokens: int = 32_768
    # Nominal A100 figures, so utilisation ratios stay defined; the toy reports no FLOPs.
    nominal_peak_flops: float = 312e12
    nominal_bandwidth: float = 2.039e12
    _terms: dict[int, DecodeTerms] = field(default_factory=dict, repr=False)

    def decode_throughput(self, batch: int) -> float:
        """Tokens/s of a decode iteration with `batch` requests."""
        return self.decode_tokens_per_s * (0.4 + 0.6 * math.sqrt(batch))

    def decode_terms(self, num_decode: int) -> DecodeTerms:
        terms = self._terms.get(num_decode)
        if terms is None:
            t = num_decode / self.decode_throughput(num_decode) if num_decode > 0 else 0.0
            terms = self._terms[num_decode] = (t, 0.0, t, 0.0)
        return terms

    def iteration_time(self, shape: BatchShape) -> float:
        prefill = shape.num_prefill_tokens / self.prefill_tokens_per_s
        return prefill + self.decode_terms(shape.num_decode)[0]

    def iteration_flops(self, shape: BatchShape) -> float:
        return 0.0

    def iteration_bytes(self, shape: BatchShape) -> float:
        return 0.0

    @property
    def peak_flops(self) -> float:
        return self.nominal_peak_flops

    @property
    def peak_bandwidth(self) -> float:
        return self.nominal_bandwidth

    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_tokens

    @property
    def price_per_hour(self) -> float:
        return self.price
