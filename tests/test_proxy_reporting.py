import asyncio
import logging

import pytest

from chaos.faults.spec import parse_fault_spec
from chaos.proxy.reporting import (
    SCRIPT_LOGGER,
    HubOptionsError,
    describe_change,
    one_line_option_errors,
    quiet_shutdown,
)

NOW = 1_000_000.0


def spec(**fields):
    return parse_fault_spec({"name": "hub-down", "kind": "refuse", **fields}, now=NOW)


def test_a_fault_switched_on_is_described_with_what_it_matches():
    line = describe_change(
        "added",
        spec(kind="latency", params={"delay_ms": 200}, match={"roles": ["registry", "auth"], "origins": ["mirror"]},
             trigger={"probability": 0.5, "seed": 7}, ttl_s=120),
        NOW,
    )  # fmt: skip
    assert line == (
        "hub-chaos: fault on: hub-down (latency) params delay_ms=200 jitter_ms=0"
        " match roles=registry,auth origins=mirror trigger probability=0.5 seed=7, expires in 120 s"
    )


def test_words_a_scenario_wrote_are_logged_by_length_only():
    # An http fault's message or an auth-deny's details may carry a scenario's secret.
    http = describe_change("added", spec(kind="http", params={"status": 418, "message": "s3cr3t hunter2"}), NOW)
    deny = describe_change("added", spec(kind="auth-deny", params={"mode": "forbidden", "details": "pw=xyz"}), NOW)
    assert "s3cr3t" not in http and "message=<14 chars>" in http and "status=418" in http
    assert "pw=xyz" not in deny and "details=<6 chars>" in deny and "mode=forbidden" in deny


def test_faults_switched_off_say_why():
    assert describe_change("removed", spec(), NOW) == "hub-chaos: fault off (removed): hub-down (refuse)"
    assert describe_change("cleared", spec(), NOW) == "hub-chaos: fault off (reset): hub-down (refuse)"
    assert describe_change("expired", spec(), NOW) == "hub-chaos: fault off (expired): hub-down (refuse)"


def test_our_option_errors_lose_their_traceback_others_keep_it():
    one_line_option_errors()
    one_line_option_errors()  # idempotent
    logger = logging.getLogger(SCRIPT_LOGGER)
    assert sum(type(f).__name__ == "_OneLine" for f in logger.filters) == 1
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        for error in (HubOptionsError("Cannot use hub_control option 'x': bad"), ValueError("a bug")):
            try:
                raise error
            except Exception as err:  # noqa: BLE001
                logger.error("error in script %s", "addons/hub_chaos.py", exc_info=(type(err), err, err.__traceback__))
    finally:
        logger.removeHandler(handler)
    ours, bug = records
    assert ours.getMessage() == "error in script addons/hub_chaos.py: Cannot use hub_control option 'x': bad"
    assert ours.exc_info is None
    assert bug.exc_info is not None


@pytest.mark.parametrize("quiet", [True, False])
def test_cancelled_connections_at_exit_are_not_reported_other_errors_are(quiet):
    reported = []

    def restored(loop, context):  # the handler mitmproxy puts back when its master returns
        reported.append(context["message"])

    async def main():
        loop = asyncio.get_running_loop()
        if quiet:
            assert quiet_shutdown() is not None
        loop.set_exception_handler(restored)

        async def connection():
            await asyncio.Event().wait()

        task = loop.create_task(connection())
        task.add_done_callback(lambda t: t.exception())  # what Python 3.11's asyncio.streams does
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
        # asyncio.run's last act: cancel what is left, then run it to completion.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.call_exception_handler({"message": "something else", "exception": RuntimeError("boom")})
    finally:
        loop.close()
    if quiet:
        assert reported == ["something else"]
    else:
        assert len(reported) == 2 and reported[1] == "something else"  # the cancellation was reported
