"""Read models for card tests, with everyday defaults: name only what a test is about."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from storage.ideas import STATUS_LABELS, TRANSITIONS, reference
from storage.views import (
    ActionView,
    ChangeMakerSummary,
    FeedbackView,
    IdeaView,
    MirStats,
    SessionView,
    StatsBlock,
)


def session(session_id: int, status: str, day: date, team: str, **fields: Any) -> SessionView:
    defaults: dict[str, Any] = {
        "change_maker_name": "Ahmed Khan",
        "start_time": time(10, 0),
        "expected_attendees": 8,
        "attendees": None,
        "themes": None,
        "went_well": None,
        "to_change": None,
        "rating": None,
    }
    return SessionView(
        id=session_id, status=status, session_date=day, team=team, **(defaults | fields)
    )


def action(action_id: int, text: str, **fields: Any) -> ActionView:
    defaults: dict[str, Any] = {
        "session_id": 3,
        "session_date": date(2022, 6, 13),
        "session_team": "Benefits team",
        "owner": None,
        "due_date": None,
        "status": "open",
        "status_reason": None,
        "overdue": False,
    }
    return ActionView(id=action_id, text=text, **(defaults | fields))


def person(person_id: int, name: str, **fields: Any) -> ChangeMakerSummary:
    defaults: dict[str, Any] = {
        "service_area": "Revenues and Benefits",
        "sessions_held": 0,
        "next_session": None,
        "awaiting_log": 0,
        "open_actions": 0,
        "overdue_actions": 0,
        "reachable": True,
        "nothing_scheduled": False,
    }
    return ChangeMakerSummary(person_id=person_id, name=name, **(defaults | fields))


def feedback(day: date, team: str, **fields: Any) -> FeedbackView:
    defaults: dict[str, Any] = {"rating": 4, "went_well": "Everyone spoke", "to_change": None}
    return FeedbackView(session_date=day, team=team, **(defaults | fields))


def block(label: str, **fields: Any) -> StatsBlock:
    defaults: dict[str, Any] = {
        "change_makers": 3,
        "sessions_held": 1,
        "sessions_in_diary": 1,
        "awaiting_log": 0,
        "nothing_scheduled": ("Cal Davies",),
        "actions_agreed": 3,
        "actions_done": 1,
        "actions_overdue": 1,
        "top_themes": (("Paperwork", 1), ("Phone queues", 1)),
        "average_rating": 4.0,
        "ratings": 1,
        "latest_feedback": (feedback(date(2022, 6, 13), "Benefits team"),),
    }
    return StatsBlock(label=label, **(defaults | fields))


# The figures before anyone has done anything.
EMPTY_STATS = MirStats(
    overall=block(
        "Whole programme",
        change_makers=0,
        sessions_held=0,
        sessions_in_diary=0,
        nothing_scheduled=(),
        actions_agreed=0,
        actions_done=0,
        actions_overdue=0,
        top_themes=(),
        average_rating=None,
        ratings=0,
        latest_feedback=(),
    ),
    by_area=(),
    unreachable=(),
)


def idea(idea_id: int = 7, title: str = "Scan post at the counter", **fields: Any) -> IdeaView:
    """An idea as cards get it; a `status` given brings its own label and next statuses."""
    status = fields.pop("status", "new")
    submitted = datetime(2022, 6, 13, 9, 30, tzinfo=UTC)
    defaults: dict[str, Any] = {
        "reference": reference(idea_id),
        "problem": "Letters are photocopied and sent round the office by hand.",
        "suggestion": "Scan them at the counter and email them to the right team.",
        "service_area": "Customer Services",
        "principles": (1, 3),
        "benefits": ("time_saved",),
        "benefit_other": None,
        "status_label": STATUS_LABELS[status],
        "submitted_by": "Priya Shah",
        "supporters": 0,
        "created_at": submitted,
        "status_changed_at": submitted,
        "last_reason": None,
        "last_changed_by": None,
        "duplicate_of": None,
        "next_statuses": TRANSITIONS[status],
    }
    return IdeaView(id=idea_id, title=title, status=status, **(defaults | fields))
