"""The run-wide check that logs at INFO and above hold no personal data
(tests/support/log_scan.py): which values it looks for, that it finds them, and that a leak
fails the run without the report repeating the value."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest

from tests.support.log_scan import LogCapture, LogScan, PersonalValues, find_leaks


def test_the_rule_takes_what_people_wrote_and_leaves_the_bots_words() -> None:
    values = PersonalValues()
    values.note_user("Oriel Vantablack", "oriel.vantablack@cambridge.gov.uk")
    values.note_user("Bo", "")  # too short to tell anyone apart
    for text in (
        "status alloy",  # a command and a project: the bot's vocabulary
        "my change makers",
        "<at>Our Cambridge</at> digest settings",
        "yes",
        "2026-11-28",
        "idea Quillon rota for the depot",  # the start of an idea's title
        "Ferrule wants a word",  # not a command: typed text
    ):
        values.note_activity({"type": "message", "text": text})
    values.note_activity(
        {
            "type": "message",
            "value": {
                "action": "mir_log",
                "themes": "Gimbal queues, parking",
                "changes": "Retire the franking machine\nOne rota",
                "service_area": "Customer Services",  # a choice, not free text
                "rating": "4",
                "date": "2026-11-27",
            },
        }
    )
    values.note_activity(
        {
            "type": "invoke",
            "value": {"action": {"verb": "idea_status", "data": {"reason": "Budgeted already"}}},
        }
    )
    assert values.copy() == {
        "Oriel Vantablack": "name",
        "oriel.vantablack@cambridge.gov.uk": "email",
        "Quillon rota for the depot": "typed",
        "Ferrule wants a word": "typed",
        "Gimbal queues, parking": "form:themes",
        "Gimbal queues": "form:themes",
        "Retire the franking machine\nOne rota": "form:changes",
        "Retire the franking machine": "form:changes",
        "One rota": "form:changes",
        "Budgeted already": "form:reason",
    }


def test_project_names_and_service_areas_are_public() -> None:
    values = PersonalValues()
    for public in ("Customer Services", "Organisational Change", "Programme level"):
        values.note(public, "form:title")
    assert values.copy() == {}


def test_one_plain_word_and_setting_names_are_too_generic_to_count() -> None:
    values = PersonalValues()
    for generic in ("parking", "created", "GRAPH_ENABLED", "MicrosoftAppId"):
        values.note(generic, "form:title")
    assert values.copy() == {}
    values.note("Vantablack", "form:title")  # a surname alone is one plain word too
    values.note("Oriel Vantablack", "name")
    values.note("parking2026", "form:title")
    assert set(values.copy()) == {"Oriel Vantablack", "parking2026"}


def test_leaks_are_found_in_any_case_and_inside_longer_text() -> None:
    written = [
        "Idea IDEA-0001 submitted",
        "Looked up ORIEL VANTABLACK in the directory",
        "mail=oriel.vantablack@cambridge.gov.uk;",
        "Theme retire the franking machine kept",
    ]
    values = {
        "Oriel Vantablack": "name",
        "oriel.vantablack@cambridge.gov.uk": "email",
        "Retire the franking machine": "form:changes",
        "Gimbal queues": "form:themes",  # never logged
    }
    found = {(kind, line) for kind, _, line in find_leaks(written, values)}
    assert found == {
        ("name", written[1]),
        ("email", written[2]),
        ("form:changes", written[3]),
    }


def test_a_leak_fails_the_run_and_the_report_does_not_repeat_it() -> None:
    values = PersonalValues()
    values.note_user("Oriel Vantablack", "")
    scan = LogScan(values)
    # A logger of its own, so that the record reaches this capture and not the run's.
    leaky = logging.getLogger("tests.log_scan.leaky")
    leaky.propagate = False
    leaky.setLevel(logging.DEBUG)
    leaky.addHandler(scan.capture)
    try:
        leaky.info("Welcome card sent to %s", "Oriel Vantablack")
        leaky.debug("Debug may name %s", "Oriel Vantablack")  # below INFO: not kept
        leaky.warning("A warning without names")
    finally:
        leaky.removeHandler(scan.capture)
    session = SimpleNamespace(exitstatus=pytest.ExitCode.OK)
    scan.pytest_sessionfinish(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED
    assert [leak.where.logger for leak in scan.leaks] == ["tests.log_scan.leaky"]

    report = io.StringIO()
    reporter = SimpleNamespace(
        section=lambda title, **_: report.write(f"== {title}\n"),
        write_line=lambda line: report.write(line + "\n"),
    )
    scan.pytest_terminal_summary(reporter)
    text = report.getvalue()
    assert "Oriel Vantablack" not in text and "Vantablack" not in text
    assert "name Or… (16 characters)" in text, text
    assert "'Welcome card sent to <name>'" in text, text


def test_the_capture_writes_exceptions_as_the_bot_does() -> None:
    capture = LogCapture()
    quiet = logging.getLogger("tests.log_scan.quiet")
    quiet.propagate = False
    quiet.addHandler(capture)
    try:
        try:
            raise RuntimeError("Lookup failed")
        except RuntimeError:
            quiet.exception("Could not look someone up")
    finally:
        quiet.removeHandler(capture)
    [line] = capture.written
    assert line.startswith("Could not look someone up\nTraceback")
    assert "RuntimeError: Lookup failed" in line
