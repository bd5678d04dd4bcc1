"""Render the Jinja2 templates in `templates/` into Adaptive Card dicts.

Templates produce JSON text. Every string that comes from data or from a person is emitted
through `|tojson`, so quotes, backslashes, newlines and template syntax in it stay inside a
JSON string and come back verbatim when the text is parsed.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
)

from storage.ideas import BENEFIT_LABELS, STATUS_LABELS

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_SUFFIX = ".json.j2"  # `_`-prefixed templates are shared parts, not cards

RAG_LABELS = {None: "Not reported", "red": "Red", "amber": "Amber", "green": "Green"}
# TextBlock colours of the host's palette that read as red, amber and green.
RAG_COLORS = {None: "default", "red": "attention", "amber": "warning", "green": "good"}

ELLIPSIS = "…"

# How a 1-5 format rating reads on the log form and in the figures.
RATING_WORDS = {1: "poor", 2: "fair", 3: "good", 4: "very good", 5: "excellent"}

# The council's clock: a moment stored in UTC is shown as the day it was in Cambridge.
COUNCIL_ZONE = ZoneInfo("Europe/London")


class CardRenderError(RuntimeError):
    """A card could not be rendered: unknown card, missing or bad context, or a template bug."""


def month_label(month: date) -> str:
    """The month a date falls in, as people write it: "June 2022"."""
    return f"{month:%B %Y}"


def date_label(day: date) -> str:
    """A day as council staff write it in a diary: "Tue 14 June 2022" (no leading zero)."""
    return f"{day:%a} {day.day} {day:%B %Y}"


def time_label(moment: time) -> str:
    """A start time on the 24-hour clock, as Teams shows it: "14:30"."""
    return f"{moment:%H:%M}"


def rating_label(rating: int) -> str:
    """A format rating with its meaning: 4 is "4 – very good"."""
    try:
        return f"{rating} – {RATING_WORDS[rating]}"
    except KeyError:
        raise ValueError(f"Unknown rating {rating!r}") from None


def day_label(moment: datetime) -> str:
    """The day a moment fell on in Cambridge, as `date_label` writes it (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return date_label(moment.astimezone(COUNCIL_ZONE).date())


def idea_status_label(status: str) -> str:
    """An idea's status as people read it: "under_review" is "Under review"."""
    try:
        return STATUS_LABELS[status]
    except KeyError:
        raise ValueError(f"Unknown idea status {status!r}") from None


def benefit_label(benefit: str) -> str:
    """An expected benefit as people read it: "time_saved" is "Time saved"."""
    try:
        return BENEFIT_LABELS[benefit]
    except KeyError:
        raise ValueError(f"Unknown benefit {benefit!r}") from None


def as_number(text: object) -> int | float | None:
    """What a number input typed as `text` holds, or None when it is not a number.

    Input.Number takes only a number as its value, so a form shown again keeps "8" as 8 and
    leaves out what cannot be one (the reason next to the field says why it was refused).
    """
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        number = text
    elif isinstance(text, str):
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            number = float(text.strip())
        except ValueError:
            return None
    else:
        return None
    # Not NaN nor infinity ("nan" and "inf" read as floats): JSON cannot carry them.
    return number if number - number == 0 else None


def rag_label(rag: str | None) -> str:
    """The RAG status as people read it: "red" is "Red", None is "Not reported"."""
    try:
        return RAG_LABELS[rag]
    except KeyError:
        raise ValueError(f"Unknown RAG status {rag!r}") from None


def rag_color(rag: str | None) -> str:
    """The TextBlock colour for a RAG status."""
    try:
        return RAG_COLORS[rag]
    except KeyError:
        raise ValueError(f"Unknown RAG status {rag!r}") from None


def truncate_text(text: str, length: int) -> str:
    """At most `length` characters: cut at a word boundary when one is near, then "…"."""
    if len(text) <= length:
        return text
    cut = text[: length - len(ELLIPSIS)]
    if not text[len(cut)].isspace():
        # The cut splits a word: drop that part-word unless the word is very long.
        space = cut.rfind(" ")
        if space > 0 and len(cut) - space <= 20:
            cut = cut[:space]
    return cut.rstrip() + ELLIPSIS


def make_environment(loader: BaseLoader) -> Environment:
    """The Jinja2 environment cards are rendered in, reading templates from `loader`."""
    environment = Environment(
        loader=loader,
        undefined=StrictUndefined,
        # The output is JSON, not HTML: strings are made safe by `|tojson`, not by escaping.
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    environment.filters.update(
        month_label=month_label,
        date_label=date_label,
        time_label=time_label,
        day_label=day_label,
        rating_label=rating_label,
        idea_status_label=idea_status_label,
        benefit_label=benefit_label,
        as_number=as_number,
        rag_label=rag_label,
        rag_color=rag_color,
        truncate_text=truncate_text,
    )
    # The idea form's benefit choices, in the order storage.ideas.BENEFITS lists them.
    environment.globals["benefit_labels"] = BENEFIT_LABELS
    return environment


@cache
def _environment() -> Environment:
    environment = make_environment(FileSystemLoader(TEMPLATES_DIR))
    # The templates ship with the code and do not change while it runs: no stat() of the
    # template file on every card.
    environment.auto_reload = False
    return environment


def render_card(name: str, /, **context: Any) -> dict[str, Any]:
    """Render the card `name` with `context` and return it as a dict ready to attach.

    `name` is positional-only so a card's context may itself hold a `name` (a reminder
    greets the person by it).

    Raises CardRenderError naming the template if the card is unknown, if the context lacks
    something the template uses, or if the template produced invalid JSON.
    """
    if name.startswith("_") or "/" in name or "\\" in name:
        raise CardRenderError(f"Unknown card {name!r}")
    template_name = f"{name}{TEMPLATE_SUFFIX}"
    try:
        template = _environment().get_template(template_name)
    except TemplateNotFound as error:
        raise CardRenderError(f"Unknown card {name!r} (no template {template_name})") from error
    except TemplateError as error:
        raise CardRenderError(f"Template {template_name} failed to load: {error}") from error
    try:
        rendered = template.render(**context)
    except (TemplateError, ValueError) as error:
        raise CardRenderError(f"Template {template_name} failed to render: {error}") from error
    try:
        card = json.loads(rendered)
    except json.JSONDecodeError as error:
        raise CardRenderError(
            f"Template {template_name} rendered invalid JSON at line {error.lineno}, "
            f"column {error.colno}: {error.msg}"
        ) from error
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        raise CardRenderError(f"Template {template_name} did not render an AdaptiveCard object")
    return card
