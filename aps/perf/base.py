"""The interface every performance model offers, the batch it prices, and cost arithmetic.

Units everywhere: seconds, FLOPs, bytes, tokens, US dollars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple, Protocol, runtime_checkable

DecodeTerms = tuple[float, float, float, float]


class BatchShape(NamedTuple):
    """What one engine iteration processes, reduced to the sums its cost depends on.
    (A named tuple: the simulator makes several per iteration, and a frozen dataclass costs
    twice as much to build.)

    num_prefill_tokens: prompt tokens (chunks) computed in this iteration.
    prefill_attn_pairs: sum over chunks of n * (c0 + (n + 1) / 2), chunk length n, c0 tokens
        already cached for that request: the causal query x key pairs of the chunk.
    prefill_kv_tokens: sum over chunks of c0 + n: KV entries the chunks' attention reads.
    num_decode: decoding requests, one new token each.
    decode_ctx_sum: sum of their context lengths (KV entries each decode step reads).
    """

    num_prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    prefill_kv_tokens: int = 0
    num_decode: int = 0
    decode_ctx_sum: int = 0

    @property
    def num_tokens(self) -> int:
        return self.num_prefill_tokens + self.num_decode

    @classmethod
    def build(
        cls, prefill: Iterable[tuple[int, int]] = (), decode_ctx: Iterable[int] = ()
    ) -> BatchShape:
        """From per-request parts: `prefill` as (chunk_len, cached_tokens), `decode_ctx` lengths."""
        tokens, kv_tokens, pairs = 0, 0, 0.0
        for n, c0 in prefill:
            tokens += n
            kv_tokens += c0 + n
            pairs += n * (c0 + (n + 1) / 2)
        ctx = list(decode_ctx)
        return cls(tokens, pairs, kv_tokens, len(ctx), sum(ctx))


@runtime_checkable
class PerfModel(Protocol):
    """What the simulator and the embedded engine need from a performance model."""

    name: str
    tp: int

    @property
    def peak_flops(self) -> float: ...  # whole tensor-parallel group

    @property
    def peak_bandwidth(self) -> float: ...  # bytes/s, whole group

    @property
    def kv_capacity_tokens(self) -> int: ...

    @property
    def price_per_hour(self) -> float: ...  # USD for the whole group

    def iteration_time(self, shape: BatchShape) -> float: ...

    def decode_terms(self, num_decode: int) -> DecodeTerms: ...

    def iteration_flops(self, shape: BatchShape) -> float: ...

    def iteration_bytes(self, shape: BatchShape) -> float: ...


def decode_time(terms: DecodeTerms, ctx_sum: float) -> float:
    """One decode-only iteration from `decode_terms`: max(compute line, memory line)."""
    cb, cpc, mb, mpc = terms
    return max(cb + cpc * ctx_sum, mb + mpc * ctx_sum)


def decode_run_time(terms: DecodeTerms, ctx_sum: float, num_decode: int, iters: int) -> float:
    """Total time of `iters` decode iterations of a fixed batch, in O(1).

    Each iteration adds one token to each of `num_decode` requests, so iteration j sees
    ctx_sum + j * num_decode. Each line is linear in j; their max switches at most once.
    """
    if iters <= 0:
        return 0.0
    cb, cpc, mb, mpc = terms
    d = float(num_decode)
    c_a, c_b = cb + cpc * ctx_sum, cpc * d  # compute line: c_a + c_b * j
    m_a, m_b = mb + mpc * ctx_sum, mpc * d
    total = 0.0
    lo = 0
    if c_b != m_b:
        cross = (m_a - c_a) / (c_b - m_b)  # where the lines meet
        split = min(max(int(cross) + 1, 0), iters) if cross >= 0 else 0
        if split > 0:
            use_c = c_a >= m_a
            a, b = (c_a, c_b) if use_c else (m_a, m_b)
            total += _line_sum(a, b, 0, split)
            lo = split
    if lo < iters:
        j = (lo + iters - 1) / 2
        use_c = c_a + c_b * j >= m_a + m_b * j
        a, b = (c_a, c_b) if use_c else (m_a, m_b)
        total += _line_sum(a, b, lo, iters)
    return total


def decode_iters_within(terms: DecodeTerms, ctx_sum: float, num_decode: int, start: float,
                        end: float, upper: int) -> int:
    """The most decode iterations (<= `upper`) of a fixed batch that, begun at `start`, end
    by `end`: the n with `start + decode_run_time(..., n) <= end`, in O(1)."""
    return decode_run_within(terms, ctx_sum, num_decode, start, end, upper)[0]


def decode_run_within(terms: DecodeTerms, ctx_sum: float, num_decode: int, start: float,
                      end: float, upper: int) -> tuple[int, float]:
    """`decode_iters_within`, and the `decode_run_time` of that many iterations.

    The time per iteration is the larger of two lines in the iteration index, and the larger
    one changes at most once: the sum is one quadratic in n before that point and another
    after, each solved for n. The answer is then checked against `decode_run_time` itself
    (n fits and n + 1 does not; a step or two more for rounding), so it is what a search over
    n would find.
    """
    if upper <= 0:
        return 0, 0.0
    seconds = decode_run_time(terms, ctx_sum, num_decode, 1)
    if start + seconds > end:
        return 0, 0.0  # (the common case of a run cut by an arrival: one call)
    n = max(1, min(upper, _iters_estimate(terms, ctx_sum, num_decode, end - start, upper)))
    if n > 1:
        seconds = decode_run_time(terms, ctx_sum, num_decode, n)
    if start + seconds <= end:  # n fits: go up while the next one does
        while n < upper:
            more = decode_run_time(terms, ctx_sum, num_decode, n + 1)
            if start + more > end:
                break
            n, seconds = n + 1, more
        return n, seconds
    while n > 1:  # n does not fit: go down until one does
        n -= 1
        seconds = decode_run_time(terms, ctx_sum, num_decode, n)
        if start + seconds <= end:
            return n, seconds
    return 0, 0.0


def _iters_estimate(terms: DecodeTerms, ctx_sum: float, num_decode: int, budget: float,
                    upper: int) -> int:
    """The n of `decode_run_within` solved in floating point (it may be off by one)."""
    if budget == math.inf:
        return upper
    cb, cpc, mb, mpc = terms
    d = float(num_decode)
    c, m = (cb + cpc * ctx_sum, cpc * d), (mb + mpc * ctx_sum, mpc * d)  # (a, b): a + b*j
    first, second = (c, m) if c[0] >= m[0] else (m, c)  # the larger at j = 0, then the other
    split = 0  # the first j where `second` is the larger
    if second[1] > first[1]:
        split = int((first[0] - second[0]) / (second[1] - first[1])) + 1
    if split <= 0 or split >= upper:  # `first` is the larger all the way
        return _line_count(*first, budget)
    used = _line_sum(*first, 0, split)
    if used >= budget:
        return _line_count(*first, budget)
    a, b = second
    return split + _line_count(a + b * split, b, budget - used)


def _line_count(a: float, b: float, budget: float) -> int:
    """The largest n with sum_{j<n} (a + b*j) <= budget (a > 0, b >= 0)."""
    if b <= 0:
        return int(budget // a) if a > 0 else 1 << 62
    # a*n + b*n*(n-1)/2 <= budget  <=>  (b/2) n^2 + (a - b/2) n - budget <= 0
    half = b / 2
    return int((-(a - half) + math.sqrt((a - half) ** 2 + 4 * half * budget)) / (2 * half))


def _line_sum(a: float, b: float, lo: int, hi: int) -> float:
    """sum_{j=lo}^{hi-1} (a + b*j)."""
    k = hi - lo
    return a * k + b * (lo + hi - 1) * k / 2


def cost_per_1m_tokens(price_per_hour: float, tokens: float, seconds: float) -> float:
    """USD per million tokens when `tokens` took `seconds` of a machine at `price_per_hour`."""
    if tokens <= 0:
        return float("inf")
    return price_per_hour * seconds / 3600.0 / tokens * 1e6
