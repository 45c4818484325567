"""Paged KV cache accounting: fixed-size blocks, counted per request."""
from __future__ import annotations

from aps.core.errors import ConfigError


def blocks_for(num_tokens: int, block_size: int) -> int:
    return -(-num_tokens // block_size)


class BlockManager:
    """Counts the KV blocks each request holds. Never hands out more than `num_blocks`.

    Which physical block holds what is the engine's business; the scheduler only needs to know
    whether the next tokens fit, so counts are enough and every operation is O(1).
    """

    def __init__(self, num_blocks: int, block_size: int = 16):
        if num_blocks < 1 or block_size < 1:
            raise ConfigError(f"KV cache needs >= 1 block of >= 1 token: {num_blocks} x {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free_blocks = num_blocks
        self._held: dict[str, int] = {}
        self.blocks = self._held  # request id -> blocks held: read it; change it by allocate/free

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    def held(self, request_id: str) -> int:
        return self._held.get(request_id, 0)

    def blocks_needed(self, request_id: str, num_tokens: int) -> int:
        """Extra blocks needed for the request to hold `num_tokens` tokens in total."""
        return max(0, blocks_for(num_tokens, self.block_size) - self._held.get(request_id, 0))

    def can_allocate(self, request_id: str, num_tokens: int) -> bool:
        return self.blocks_needed(request_id, num_tokens) <= self.num_free_blocks

    def try_allocate(self, request_id: str, num_tokens: int) -> bool:
        """`allocate` if it fits, in one call (the per-iteration hot path); False if not."""
        held = self._held.get(request_id, 0)
        extra = -(-num_tokens // self.block_size) - held
        if extra <= 0:
            return True
        if extra > self.num_free_blocks:
            return False
        self.num_free_blocks -= extra
        self._held[request_id] = held + extra
        return True

    def allocate(self, request_id: str, num_tokens: int) -> None:
        """Grow the request's share to cover `num_tokens` tokens in total."""
        held = self._held.get(request_id, 0)
        extra = -(-num_tokens // self.block_size) - held
        if extra <= 0:
            return
        if extra > self.num_free_blocks:
            raise MemoryError(f"KV cache full: {request_id} needs {extra} blocks, "
                              f"{self.num_free_blocks} free")
        self.num_free_blocks -= extra
        self._held[request_id] = held + extra

    def free(self, request_id: str) -> int:
        """Release everything the request holds; returns the number of blocks freed."""
        n = self._held.pop(request_id, 0)
        self.num_free_blocks += n
        return n

    def __len__(self) -> int:
        return len(self._held)
