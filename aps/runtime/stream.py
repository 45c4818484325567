"""The text of one request, as the driver produces it, ending when the request ends."""
from __future__ import annotations

import asyncio

from aps.core import Request

_END = object()


class Stream:
    def __init__(self, request: Request):
        self.request = request
        self._queue: asyncio.Queue = asyncio.Queue()
        self.done = asyncio.Event()
        self.error: Exception | None = None  # why the request failed, when the driver knows

    def push(self, text: str) -> None:
        self._queue.put_nowait(text)

    def close(self) -> None:
        """The request has ended (see `request.status`); iteration stops after what was pushed."""
        if not self.done.is_set():
            self.done.set()
            self._queue.put_nowait(_END)

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        return item

    async def text(self) -> str:
        """Everything, once the request has ended."""
        return "".join([piece async for piece in self])
