"""A worker-wide budget of decoded pixels, so a batch of huge images waits instead of multiplying memory.

A 40-megapixel JPEG of 620 KB decodes to 120 MB; sixteen of them in one batch,
two batches in flight, would need 3.8 GB. The embed agent takes pixels from
this budget before decoding an image and gives them back once the models are
done with it. An image larger than the whole budget takes all of it, so every
image can run, one at a time if need be. Waiters are served first come, first
served, so a big image is not starved by a stream of small ones.
"""

from __future__ import annotations

import asyncio
from collections import deque


class PixelBudget:
    """Weighted semaphore over decoded pixels, for one event loop."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"the pixel budget must be positive, got {capacity}")
        self.capacity = capacity
        self.available = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def weight(self, pixels: int) -> int:
        """What an image of ``pixels`` takes from the budget (never more than all of it)."""
        return max(1, min(pixels, self.capacity))

    def try_take(self, pixels: int) -> bool:
        """Take the weight of ``pixels`` now if it is free and nobody waits before us."""
        weight = self.weight(pixels)
        if self._waiters or weight > self.available:
            return False
        self.available -= weight
        return True

    async def take(self, pixels: int) -> None:
        """Take the weight of ``pixels``, waiting for it if need be."""
        if self.try_take(pixels):
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self.weight(pixels), waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give(pixels)  # granted just as we were cancelled: hand it on
            else:
                self._waiters = deque(w for w in self._waiters if w[1] is not waiter)
                self._wake()
            raise

    def give(self, pixels: int) -> None:
        """Return the weight of ``pixels`` taken before."""
        self.available = min(self.capacity, self.available + self.weight(pixels))
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self.available:
            weight, waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.available -= weight
            waiter.set_result(None)
