"""Idea submissions for tests: valid unless a test changes a field."""

from __future__ import annotations

from typing import Any

from storage.ideas import IdeaSubmission


def idea_about(
    title: str = "Scan post at the counter",
    problem: str = "Letters are photocopied and carried round the office.",
    suggestion: str = "Scan them at the counter and email them to the right team.",
    **fields: Any,
) -> IdeaSubmission:
    defaults: dict[str, Any] = {
        "service_area": "Customer Services",
        "principles": (1, 3),
        "benefits": ("time_saved",),
        "benefit_other": None,
        "anonymous": False,
    }
    return IdeaSubmission(
        title=title, problem=problem, suggestion=suggestion, **(defaults | fields)
    )
