import pytest

from chaos.proxy.tap import EVENT_FIELDS, EventTap


def event(**overrides):
    base = {name: None for name in EVENT_FIELDS}
    base.update(ts=1.0, bytes=0, latency_ms=0.0)
    base.update(overrides)
    return base


def fill(tap, n):
    for i in range(n):
        tap.append(event(path=f"/{i}"))


def test_ids_start_at_one_and_increase():
    tap = EventTap()
    assert [tap.append(event())["id"] for _ in range(3)] == [1, 2, 3]
    assert tap.last_id == 3


def test_reader_following_the_cursor_sees_every_event_once():
    tap = EventTap(capacity=100)
    seen, cursor = [], 0
    for batch in (3, 0, 5, 1):
        fill(tap, batch)
        page = tap.since(cursor, limit=2)
        while page.events:
            seen.extend(e["id"] for e in page.events)
            cursor = page.next
            page = tap.since(cursor, limit=2)
        assert page.next == cursor
    assert seen == list(range(1, 10))


def test_overflow_reports_dropped_events_and_resumes_after_them():
    tap = EventTap(capacity=3)
    fill(tap, 5)
    page = tap.since(0)
    assert page.dropped == 2
    assert [e["id"] for e in page.events] == [3, 4, 5]
    assert page.next == 5
    assert tap.since(page.next).dropped == 0


def test_only_dropped_events_after_cursor_still_advance_it():
    tap = EventTap(capacity=2)
    fill(tap, 3)
    page = tap.since(0, limit=1)
    assert (page.dropped, [e["id"] for e in page.events], page.next) == (1, [2], 2)


def test_returned_events_are_copies():
    tap = EventTap()
    tap.append(event(path="/a"))
    tap.since(0).events[0]["path"] = "/changed"
    assert tap.since(0).events[0]["path"] == "/a"


@pytest.mark.parametrize(
    "bad",
    [{"ts": 1.0}, {**event(), "extra": 1}],
    ids=["missing fields", "unknown field"],
)
def test_append_rejects_events_with_wrong_fields(bad):
    with pytest.raises(ValueError, match="tap event fields"):
        EventTap().append(bad)


@pytest.mark.parametrize("cursor, limit", [(-1, 10), (0, 0), (5, 10)])
def test_since_rejects_bad_cursor_or_limit(cursor, limit):
    tap = EventTap()
    fill(tap, 2)
    with pytest.raises(ValueError):
        tap.since(cursor, limit)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        EventTap(capacity=0)
