"""`chaos run --dry-run`: what a scenario would do, without starting anything."""

from __future__ import annotations

from chaos.language.model import LIVE_MODE, Scenario
from chaos.steps.parse import describe


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def plan(scenario: Scenario) -> str:
    lines = [f"scenario {scenario.name} ({scenario.path})"]
    if scenario.target:
        target = scenario.target
        lines.append(f"  target: mirror {target.mirror_url}, fault proxy control {target.control_url}"
                     + (f", {LIVE_MODE}" if target.live else ""))
    else:
        lab = scenario.lab
        lines.append(f"  lab: {plural(len(lab.images), 'image')}, {plural(len(lab.users), 'user')}" + (", push registry" if lab.push_registry else ""))
        for image in lab.images:
            lines.append(f"    {image.ref.familiar:<32} {image.size_bytes / 1e6:8.1f} MB {'private' if image.private else 'public'}")
    for title, steps in (("steady state", scenario.steady_state), ("steps", scenario.steps), ("rollback", scenario.rollback)):
        if steps:
            lines.append(f"  {title}:")
            for step in steps:
                lines.append(f"    {step.name:<36} {describe(step):<50} deadline {step.timeout_s:g}s")
    return "\n".join(lines)
