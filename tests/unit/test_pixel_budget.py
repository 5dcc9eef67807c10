"""The decoded-pixel budget: waits instead of overcommitting, never deadlocks on an image larger than it."""

from __future__ import annotations

import asyncio

import pytest

from streams.pixel_budget import PixelBudget


async def test_takers_wait_until_pixels_are_given_back_first_come_first_served():
    budget = PixelBudget(100)
    await budget.take(60)
    order = []

    async def take(name: str, pixels: int) -> None:
        await budget.take(pixels)
        order.append(name)

    big = asyncio.create_task(take("big", 80))
    await asyncio.sleep(0)
    assert not budget.try_take(10)  # free pixels, but the big image waits first
    small = asyncio.create_task(take("small", 10))
    await asyncio.sleep(0)
    assert order == []
    budget.give(60)
    await asyncio.gather(big, small)
    assert order == ["big", "small"] and budget.available == 10


async def test_an_image_larger_than_the_budget_takes_all_of_it():
    budget = PixelBudget(100)
    await budget.take(40_000_000)
    assert budget.available == 0
    budget.give(40_000_000)
    assert budget.available == 100


async def test_a_cancelled_waiter_gives_its_place_and_pixels_back():
    budget = PixelBudget(100)
    await budget.take(100)
    waiter = asyncio.create_task(budget.take(50))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.give(100)
    assert budget.available == 100 and budget.try_take(100)
