"""The read budget: bytes of large reads in flight, granted in order, refused past a wait."""

from __future__ import annotations

import asyncio

import pytest

from tierset.core.errors import Code, TiersetError
from tierset.ops.config import Config, ConfigError
from tierset.ops.large_reads import Lease, ReadBudget


async def _hold(budget: ReadBudget, size: int, release: asyncio.Event, log: list[int]) -> None:
    async with budget.reserve(size):
        log.append(size)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_reservations_past_the_budget_wait_and_are_granted_in_arrival_order():
    budget = ReadBudget(capacity=100, wait_seconds=10)
    first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
    granted: list[int] = []
    holding = asyncio.create_task(_hold(budget, 70, first, granted))
    await _settle()
    big = asyncio.create_task(_hold(budget, 60, second, granted))
    await _settle()
    # 20 would fit now, but it arrived after 60: it may not overtake it.
    small = asyncio.create_task(_hold(budget, 20, third, granted))
    await _settle()
    assert granted == [70]
    assert budget.in_flight == 70

    first.set()
    await _settle()
    assert granted == [70, 60, 20]
    assert budget.in_flight == 80

    second.set()
    third.set()
    await asyncio.gather(holding, big, small)
    assert budget.in_flight == 0


async def test_a_reservation_that_waits_too_long_is_refused_as_unavailable():
    budget = ReadBudget(capacity=10, wait_seconds=0.05)
    release = asyncio.Event()
    holding = asyncio.create_task(_hold(budget, 10, release, []))
    await _settle()

    with pytest.raises(TiersetError) as refused:
        async with budget.reserve(5):
            pass

    assert (refused.value.code, refused.value.reason) == (
        Code.UNAVAILABLE,
        "READS_OVERLOADED",
    )
    release.set()
    await holding
    assert budget.in_flight == 0
    async with budget.reserve(10):  # nothing was left behind by the refused one
        assert budget.in_flight == 10


async def test_a_cancelled_wait_leaves_nothing_reserved_and_unblocks_those_behind():
    budget = ReadBudget(capacity=10, wait_seconds=10)
    release = asyncio.Event()
    granted: list[int] = []
    holding = asyncio.create_task(_hold(budget, 8, release, granted))
    await _settle()
    blocked = asyncio.create_task(_hold(budget, 9, asyncio.Event(), granted))
    await _settle()
    behind = asyncio.create_task(_hold(budget, 2, release, granted))
    await _settle()
    assert granted == [8]

    blocked.cancel()  # the caller's deadline passed
    await _settle()
    assert granted == [8, 2]
    release.set()
    await asyncio.gather(holding, behind)
    assert budget.in_flight == 0


async def test_a_read_larger_than_the_whole_budget_waits_for_all_of_it():
    budget = ReadBudget(capacity=10, wait_seconds=1)
    async with budget.reserve(1000):
        assert budget.in_flight == 10


async def test_a_lease_holds_what_it_entered_until_released_and_holds_nothing_otherwise():
    budget = ReadBudget(capacity=100, wait_seconds=1)
    small = Lease()
    assert small.held is None  # a small read enters nothing: nothing to release
    await small.release()

    lease = Lease()
    await lease.enter_async_context(budget.reserve(30))
    await lease.enter_async_context(budget.reserve(20))
    assert lease.held is not None
    assert budget.in_flight == 50  # kept past the read, until the answer is built
    await lease.release()
    assert (budget.in_flight, lease.held) == (0, None)
    await lease.release()  # released twice: nothing more happens
    assert budget.in_flight == 0


def test_the_read_budget_is_configured_from_the_environment():
    config = Config.from_env(
        {"TIERSET_READ_BUDGET_BYTES": "1048576", "TIERSET_READ_BUDGET_WAIT_SECONDS": "0.5"}
    )
    assert (config.read_budget_bytes, config.read_budget_wait_seconds) == (1048576, 0.5)
    defaults = Config.from_env({})
    assert (defaults.read_budget_bytes, defaults.read_budget_wait_seconds) == (64 << 20, 2.0)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("TIERSET_READ_BUDGET_BYTES", "0"),
        ("TIERSET_READ_BUDGET_BYTES", "lots"),
        ("TIERSET_READ_BUDGET_WAIT_SECONDS", "-1"),
    ],
)
def test_a_bad_read_budget_setting_names_its_variable(name, raw):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: raw})
