"""A self-contained HTML page of runs, from their journals: a summary, an SVG
timeline (steps, fault windows, upstream requests by origin, verdict
colours) and every step with the diagnosis of each failure. No script, no
network: CSS and SVG inline, so the page opens from a CI artifact as it is.
Rendered with Jinja2 (autoescaped), the template next to this module."""

from __future__ import annotations

import jinja2

from chaos.journal import Journal
from chaos.report.diagnosis import Diagnosis
from chaos.report.timeline import timeline

WIDTH = 960  # the timeline's drawing width, in SVG units
LABELS = 150  # room for lane names on the left
ROW = 22
RIGHT = 24  # room for the last time label

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("chaos.report", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def html(journals: list[Journal]) -> str:
    scenarios = [_scenario(journal) for journal in journals]
    return _environment.get_template("report.html.j2").render(
        scenarios=scenarios, passed=sum(1 for j in journals if j.passed), total=len(journals),
    )


def _scenario(journal: Journal) -> dict:
    line = timeline(journal)
    scale = (WIDTH - LABELS - RIGHT) / line.seconds

    def x(seconds: float) -> float:
        return round(LABELS + seconds * scale, 2)

    def w(start: float, end: float) -> float:
        return round(max(1.5, (end - start) * scale), 2)

    rows = []
    y = 28
    rows.append({"label": "steps", "y": y, "bars": [
        {"x": x(s.start_s), "w": w(s.start_s, s.end_s), "css": s.css, "title": s.title} for s in line.steps]})
    for fault in line.faults:
        y += ROW
        rows.append({"label": f"fault {fault.label}", "y": y, "bars": [
            {"x": x(fault.start_s), "w": w(fault.start_s, fault.end_s), "css": "fault", "title": fault.title}]})
    lanes = []
    for lane in line.lanes:
        y += ROW
        lanes.append({"label": f"{lane} -> Hub", "y": y, "ticks": [
            {"x": x(t.at_s), "css": t.css, "title": t.title} for t in line.events if t.lane == lane]})
    axis = []
    step = _tick_step(line.seconds)
    at = 0.0
    while at <= line.seconds + 1e-9:
        axis.append({"x": x(at), "label": f"{at:g}s"})
        at += step
    steps = []
    for record in journal.steps:
        steps.append({
            "record": record,
            "failed": record.failed_verdicts,
            "diagnosis": Diagnosis.from_dict(record.diagnosis).lines() if record.diagnosis else [],
        })
    return {
        "journal": journal,
        "total": len(journal.steps),
        "passed": len(journal.steps) - len(journal.failed_steps),
        "height": y + ROW + 24,
        "width": WIDTH,
        "labels": LABELS,
        "rows": rows,
        "lanes": lanes,
        "axis": axis,
        "steps": steps,
    }


def _tick_step(seconds: float) -> float:
    for step in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if seconds / step <= 12:
            return step
    return 1200.0
