"""The text of one request, as the driver produces it, ending when the request ends."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import AsyncIterator

from aps.core import Request


class Stream:
    def __init__(self, request: Request):
        self.request = request
        self._texts: deque[str] = deque()
        self._waiter: asyncio.Future | None = None  # the reader's, while it waits
        self.done = asyncio.Event()
        self.error: Exception | None = None  # why the request failed, when the driver knows

    def push(self, text: str) -> None:
        self._texts.append(text)
        self._wake()

    def close(self) -> None:
        """The request has ended (see `request.status`); iteration stops after what was pushed."""
        if not self.done.is_set():
            self.done.set()
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _ready(self) -> bool:
        """Wait until there is text to read (True) or the stream has ended with none (False)."""
        while not self._texts:
            if self.done.is_set():
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return True

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        if not await self._ready():
            raise StopAsyncIteration
        return self._texts.popleft()

    async def batches(self) -> AsyncIterator[list[str]]:
        """The texts, each time in a list of all that came since the last: a reader that writes
        them to a socket writes once for what arrived together, not once for each piece."""
        while await self._ready():
            texts = list(self._texts)
            self._texts.clear()
            yield texts

    async def text(self) -> str:
        """Everything, once the request has ended."""
        return "".join([piece async for piece in self])
