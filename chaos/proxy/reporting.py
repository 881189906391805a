"""What the proxy tells the person reading its log: one line per event that
matters, no tracebacks for problems that are not bugs.

- Lines go to the standard `logging` module, which mitmproxy's terminal log
  prints. Ours use mitmproxy's ALERT level (info's urgency, shown apart from
  it), so `--set termlog_verbosity=alert --set flow_detail=0` shows them (and
  warnings and errors) without mitmproxy's per-connection info lines or flows.
- A bad option value is an OptionsError. mitmproxy 11 logs one raised from a
  script's first configure with its traceback ("error in script ..."), and then
  exits 1; HubOptionsError marks ours, and a filter on that logger turns the
  record into one line: the script and our message.
- At exit (SIGTERM, Ctrl-C) asyncio cancels the tasks of connections still
  open, and Python 3.11's asyncio.streams reports each as "Exception in
  callback ... CancelledError" with a traceback. A cancelled connection at exit
  is not an error: quiet_shutdown drops exactly those reports (CancelledError),
  passing any other to the handler that was there.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mitmproxy import exceptions
from mitmproxy.log import ALERT

from chaos.faults.faultset import ADDED, CLEARED, EXPIRED, REMOVED, REPLACED
from chaos.faults.kind import FREE_TEXT
from chaos.faults.spec import FaultSpec

__all__ = [
    "ALERT",
    "HubOptionsError",
    "describe_change",
    "one_line_option_errors",
    "quiet_shutdown",
    "settle_deferred_options",
]

SCRIPT_LOGGER = "mitmproxy.addons.script"  # where mitmproxy logs a script's load and configure errors


class HubOptionsError(exceptions.OptionsError):
    """A bad hub_* option value; the message quotes the value and says what is wrong."""


class _OneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HubOptionsError):
            record.msg = f"{record.getMessage()}: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_ONE_LINE = _OneLine()


def one_line_option_errors() -> None:
    """Make mitmproxy report our option errors at start-up in one line (idempotent)."""
    logger = logging.getLogger(SCRIPT_LOGGER)
    if _ONE_LINE not in logger.filters:
        logger.addFilter(_ONE_LINE)


def settle_deferred_options(options: Any, names: tuple[str, ...]) -> list[str]:
    """Apply the `--set` values mitmproxy kept for `names` until the script
    declared them; return one problem line for each it cannot take.

    mitmproxy applies such values right after the script's load hook, outside
    any error handling: a value it cannot convert (`--set hub_tap_capacity=x`,
    an option given twice) raises there, the script silently never loads, and
    mitmdump runs on without it. Applying them here, from load, turns each
    into one error line, which stops mitmdump at start-up.
    """
    problems = []
    for name in names:
        pending = options.deferred.get(name)
        values = getattr(pending, "val", None)  # --set values, still text
        if values is None:
            continue  # not deferred, or from a config file: mitmproxy applies it
        del options.deferred[name]
        try:
            options.set(*([f"{name}={value}" for value in values] or [name]))
        except exceptions.OptionsError as err:
            problems.append(f"hub-chaos: cannot use {name} option: {err}")
    return problems


def quiet_shutdown() -> asyncio.Task | None:
    """Arrange for the loop's reports of connection tasks cancelled at exit to be
    dropped. Call from the `running` hook and keep the task it returns.

    mitmproxy sets its own exception handler while its master runs and puts the
    previous one back when the master returns; only then does asyncio.run cancel
    what is left, so a handler set any earlier is gone by that time. So this
    sentinel task waits until asyncio.run cancels it too, and sets the handler
    then: the connection tasks' reports come an event-loop turn later.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None  # not inside mitmproxy: nothing to quieten

    async def sentinel() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            _drop_cancellations(loop)
            raise

    return loop.create_task(sentinel(), name="hub-chaos: quiet shutdown")


def _drop_cancellations(loop: asyncio.AbstractEventLoop) -> None:
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


_VERBS = {
    ADDED: "fault on",
    REPLACED: "fault replaced",
    REMOVED: "fault off (removed)",
    CLEARED: "fault off (reset)",
    EXPIRED: "fault off (expired)",
}


def describe_change(change: str, spec: FaultSpec, now: float) -> str:
    """One log line for a change of the active faults."""
    line = f"hub-chaos: {_VERBS.get(change, change)}: {spec.name} ({spec.kind})"
    if change in (ADDED, REPLACED):
        params = {k: v for k, v in _fields(spec.params).items() if v is not None}
        match = {k: v for k, v in spec.match.to_dict().items() if v}
        trigger = spec.trigger.to_dict()
        for label, fields in (("params", params), ("match", match), ("trigger", trigger)):
            if fields:
                line += f" {label} " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        line += f", expires in {max(spec.expires_at - now, 0):.0f} s"
    return line


def _fields(params: Any) -> dict[str, Any]:
    fields = {}
    for name, spec_field in getattr(params, "__dataclass_fields__", {}).items():
        value = getattr(params, name)
        # A scenario's own words (an error message) may hold its secrets: not in the log.
        if spec_field.metadata.get(FREE_TEXT) and isinstance(value, str):
            value = f"<{len(value)} chars>"
        fields[name] = value
    return fields


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return str(value)
