"""journal.json, format 2: what the runner writes is what reports read back."""

from __future__ import annotations

import json

import pytest

from chaos.journal import FORMAT_VERSION, FaultWindow, Journal, JournalError, PlannedStep, StepRecord, Verdict


def sample() -> Journal:
    journal = Journal(scenario={"name": "hub-down", "path": "hub-down.yaml"}, engine="skopeo", where="the embedded lab",
                      run_dir="runs/x", status="failed", seconds=3.21, lab={"mirror_url": "http://127.0.0.1:5000"})
    journal.plan = [PlannedStep("warm", "steps", "pull", "pull alpine:3.19")]
    journal.fault_windows = [FaultWindow("hub-down", "refuse", {"name": "hub-down", "kind": "refuse"}, on="t1", on_step="down",
                                         off="t2", off_step="up", expires_at=1e9)]
    journal.steps = [StepRecord(index=0, name="warm", phase="steps", kind="pull", loc="hub-down.yaml:3",
                                description="pull alpine:3.19", expect=["served_by: mirror"],
                                outcome={"ok": True, "summary": "ok via hub"},
                                verdicts=[Verdict("served_by", "mirror", "hub", False)], passed=False,
                                events=[{"id": 1, "kind": "manifest"}])]
    return journal


def test_a_written_journal_reads_back_the_same(tmp_path):
    path = tmp_path / "journal.json"
    written = sample()
    written.write(path)
    again = Journal.load(path)
    assert again.to_dict() == written.to_dict()
    assert again.steps[0].failed_verdicts == [Verdict("served_by", "mirror", "hub", False)]
    assert json.loads(path.read_text())["format"] == FORMAT_VERSION == 2
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file is renamed into place"


@pytest.mark.parametrize(
    "content, says",
    [("{", "not JSON"), ('{"format": 1, "scenario": {}, "steps": []}', "journal format 1"), ("[]", "not a hub-chaos journal"),
     ('{"format": 2, "scenario": {}, "steps": [{"name": "x"}]}', "malformed journal")],
)
def test_what_is_not_a_journal_of_this_format_is_refused_naming_why(tmp_path, content, says):
    path = tmp_path / "journal.json"
    path.write_text(content)
    with pytest.raises(JournalError, match=says):
        Journal.load(path)


def test_a_missing_file_is_a_journal_error(tmp_path):
    with pytest.raises(JournalError, match="cannot read"):
        Journal.load(tmp_path / "nope.json")
