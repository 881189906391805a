import asyncio

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
