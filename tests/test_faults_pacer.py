import asyncio

import pytest

from chaos.faults.pacer import ReadPacer, TokenBucket


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_bucket_starts_empty_and_refills_at_the_rate():
    clock = Clock()
    bucket = TokenBucket(1000, burst_bytes=100, clock=clock)
    assert bucket.take(500) == pytest.approx(0.5)  # 500 bytes of debt at 1000 B/s
    clock.now = 0.5
    assert bucket.take(0) == 0
    clock.now = 10  # idle time buys at most `burst` bytes
    assert bucket.take(100) == 0
    assert bucket.take(100) == pytest.approx(0.1)


def test_bucket_rejects_a_rate_of_zero():
    with pytest.raises(ValueError):
        TokenBucket(0, 0)


class FakeTransport:
    def __init__(self):
        self.reading = True
        self.closing = False
        self.pauses = 0

    def pause_reading(self):
        self.reading = False
        self.pauses += 1

    def resume_reading(self):
        self.reading = True

    def is_closing(self):
        return self.closing


def test_pacer_passes_chunks_through_and_pauses_reading_while_in_debt():
    async def scenario():
        transport = FakeTransport()
        pacer = ReadPacer(transport, rate_bytes_per_s=1000)
        assert pacer(b"x" * 50) == b"x" * 50  # never holds a chunk back
        assert not transport.reading
        await asyncio.sleep(0.2)  # 50 bytes at 1000 B/s: 50 ms
        assert transport.reading
        assert pacer(b"") == b"" and transport.reading  # the end-of-body call costs nothing

    asyncio.run(scenario())


def test_closing_the_pacer_resumes_a_paused_connection_at_once():
    async def scenario():
        transport = FakeTransport()
        pacer = ReadPacer(transport, rate_bytes_per_s=1)
        pacer(b"x" * 1000)  # would pause for 1000 s
        pacer.close()
        assert transport.reading

    asyncio.run(scenario())


def test_a_closing_transport_is_left_alone():
    async def scenario():
        transport = FakeTransport()
        transport.closing = True
        ReadPacer(transport, rate_bytes_per_s=1)(b"x" * 10)
        assert transport.pauses == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("rate,expected_read", [(1_000_000, 50_000), (1_000, 16 * 1024), (50_000_000, 256 * 1024)])
def test_a_paced_transport_reads_at_most_a_twentieth_of_a_second_and_is_restored(rate, expected_read):
    # A real asyncio socket transport, whose 256 KiB reads would outrun slow rates.
    async def scenario():
        import socket

        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        transport = writer.transport
        default = transport.max_size
        try:
            assert default == 256 * 1024
            pacer = ReadPacer(transport, rate_bytes_per_s=rate)
            assert transport.max_size == expected_read
            pacer.close()
            assert transport.max_size == default and "max_size" not in vars(transport)
            pacer.close()  # twice is harmless
            assert transport.max_size == default
        finally:
            writer.close()
            theirs.close()

    asyncio.run(scenario())


def test_released_pacer_resumes_at_once_and_paces_no_more():
    # The fault ended: a throttle must not outlive it (issue 9).
    async def scenario():
        transport = FakeTransport()
        pacer = ReadPacer(transport, rate_bytes_per_s=1000)
        pacer(b"x" * 100_000)  # 100 s of debt
        assert not transport.reading
        pacer.release()
        assert transport.reading
        pacer(b"x" * 100_000)
        assert transport.reading and transport.pauses == 1

    asyncio.run(scenario())
