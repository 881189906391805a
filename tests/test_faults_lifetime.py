import asyncio
import time

from chaos.faults.lifetime import Lifetime
from tests._faults_helpers import NOW, Clock


def test_lifetime_wait_ends_on_removal_timeout_expiry_or_abandon():
    clock = Clock()

    async def scenario():
        life = Lifetime(expires_at=NOW + 100, clock=clock)
        assert await life.wait(0.01) is False  # timed out, fault still on
        asyncio.get_running_loop().call_later(0.01, life.end)
        assert await life.wait() is True
        assert await Lifetime(NOW - 1, clock).wait() is True  # already expired
        assert await Lifetime(NOW + 100, clock).wait(abandoned=lambda: True) is False

    asyncio.run(scenario())


def test_on_end_hears_removal_once_and_cancel_stops_it():
    clock = Clock()

    async def scenario():
        life = Lifetime(expires_at=NOW + 100, clock=clock)
        heard = []
        life.on_end(lambda: heard.append("a"))
        cancel = life.on_end(lambda: heard.append("b"))
        cancel()
        life.end()
        life.end()
        await asyncio.sleep(0)
        assert heard == ["a"]

    asyncio.run(scenario())


def test_on_end_hears_expiry_without_any_call():
    async def scenario():
        life = Lifetime(expires_at=time.time() + 0.05, clock=time.time)
        ended = asyncio.Event()
        life.on_end(ended.set)
        await asyncio.wait_for(ended.wait(), 5)

    asyncio.run(scenario())


def test_on_end_of_an_ended_lifetime_calls_soon_and_a_cancelled_timer_leaves_nothing_behind():
    clock = Clock()

    async def scenario():
        heard = []
        Lifetime(expires_at=NOW - 1, clock=clock).on_end(lambda: heard.append("late"))
        await asyncio.sleep(0)
        assert heard == ["late"]
        life = Lifetime(expires_at=NOW + 100, clock=clock)
        cancel = life.on_end(lambda: heard.append("never"))
        cancel()
        assert life._timer is None and not life._waiting

    asyncio.run(scenario())


def test_without_a_loop_on_end_hears_removal_only():
    life = Lifetime(expires_at=NOW + 100, clock=Clock())
    heard = []
    life.on_end(lambda: heard.append("removed"))
    life.end()
    assert heard == ["removed"]
