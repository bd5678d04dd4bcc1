"""Small improvements: staff submit ideas, support colleagues' ideas, and the transformation
team moves them through a workflow, every change recorded with who made it and why.

Anonymity is a hard rule here, not at the edges: the submitter of an anonymous idea is kept
(so they see it in `my ideas` and hear about each change) but no read model or export row made
from that idea names them, whoever asks, and neither does a change they made to it themselves.

Like Making It Real, forms are checked here (a card's own checks can be bypassed), each check
returns what was typed so the form can come back with it kept, and the reasons are keyed by
input id. Writes that two people (or two replicas) may make at once are made safe by the
database: a unique constraint for a form pressed twice or a second "Support", a conditional
UPDATE for two admins moving the same idea.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta, tzinfo
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit
from storage.forms import as_text
from storage.models import (
    Idea,
    IdeaEvent,
    IdeaSupport,
    IdeaTriagePost,
    Person,
    Setting,
    aware,
    utcnow,
)
from storage.people import name_of
from storage.views import IdeaEventView, IdeaView


class IdeaNotFound(LookupError):
    """No idea has that id (or reference)."""


class IllegalTransition(ValueError):
    """A status change the workflow refuses; str(error) tells the council officer why."""


@dataclass(frozen=True)
class IdeaSubmission:
    title: str
    problem: str
    suggestion: str
    service_area: str  # one of SERVICE_AREAS, as spelt there
    principles: tuple[int, ...]  # design principle numbers, ascending, at least one
    benefits: tuple[str, ...]  # keys of BENEFITS, in that order, at least one
    benefit_other: str | None  # what "other" means; None unless "other" was chosen
    anonymous: bool


# --- the workflow and the form's choices ----------------------------------------------------

STATUSES = (
    "new",
    "under_review",
    "accepted",
    "in_progress",
    "implemented",
    "not_taken_forward",
    "duplicate",
)
STATUS_LABELS = {
    "new": "New",
    "under_review": "Under review",
    "accepted": "Accepted",
    "in_progress": "In progress",
    "implemented": "Implemented",
    "not_taken_forward": "Not taken forward",
    "duplicate": "Duplicate",
}
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("under_review", "not_taken_forward", "duplicate"),
    "under_review": ("accepted", "not_taken_forward", "duplicate"),
    "accepted": ("in_progress", "implemented", "not_taken_forward"),
    "in_progress": ("implemented", "not_taken_forward"),
    "implemented": (),
    "not_taken_forward": (),
    "duplicate": (),
}
# Ideas still being worked on: the ones a new idea may repeat.
OPEN_STATUSES = tuple(status for status in STATUSES if TRANSITIONS[status])

BENEFITS = ("time_saved", "money_saved", "better_for_residents", "other")
BENEFIT_LABELS = {
    "time_saved": "Time saved",
    "money_saved": "Money saved",
    "better_for_residents": "Better for residents",
    "other": "Other",
}
SERVICE_AREAS = (
    "Customer Services",
    "Revenues and Benefits",
    "Housing",
    "Planning",
    "Environmental Health",
    "Streets and Open Spaces",
    "Waste and Recycling",
    "Communities",
    "Finance",
    "HR and Organisational Development",
    "ICT and Digital",
    "Legal and Democratic Services",
    "Property and Facilities",
    "Transformation",
    "Other",
)
# The programme's seven design principles (storage/data), for filters typed in chat; the
# form checks against the principles actually stored.
PRINCIPLE_NUMBERS = range(1, 8)

# Limits, stated in the form's error texts (and in the card's own checks).
MAX_TITLE = 120
MAX_TEXT = 2000
MAX_BENEFIT_OTHER = 200
MAX_REASON = 1000

IDEA_INPUTS = (
    "title",
    "problem",
    "suggestion",
    "service_area",
    "principles",
    "benefits",
    "benefit_other",
    "anonymous",
)

TRIAGE_CHANNEL = "triage_channel"

# Ids are 32-bit integers in both databases; a bigger one from a forged card is refused here.
_MAX_ID = 2**31 - 1
_REFERENCE = re.compile(r"\s*(?:idea\s*[-#]?\s*)?#?(\d{1,10})\s*", re.ASCII | re.IGNORECASE)


def reference(idea_id: int) -> str:
    """The reference people quote: IDEA-0007."""
    return f"IDEA-{idea_id:04d}"


def parse_reference(text: object) -> int | None:
    """The idea id in "IDEA-0012", "idea-12", "idea 12", "#12" or "12"; None if there is none."""
    if isinstance(text, int) and not isinstance(text, bool):
        number = text
    elif isinstance(text, str) and (match := _REFERENCE.fullmatch(text)):
        number = int(match.group(1))
    else:
        return None
    return number if 1 <= number <= _MAX_ID else None


# --- checking the form (pure) ---------------------------------------------------------------


def check_idea_form(
    values: Mapping[str, object], *, principle_numbers: Collection[int]
) -> tuple[IdeaSubmission | None, dict[str, str], dict[str, str]]:
    """Check a submitted idea form: (the submission or None, what was typed, the reasons keyed
    by input id). Multi-selects come comma-separated ("1,3"), as Input.ChoiceSet sends them;
    the anonymous toggle "true"/"false" (or a bool). `principle_numbers` are the design
    principles that exist."""
    entries = {
        key: as_text(values.get(key), many=key in ("principles", "benefits")) for key in IDEA_INPUTS
    }
    errors: dict[str, str] = {}

    title = " ".join(entries["title"].split())
    if not title:
        errors["title"] = f"Give your idea a short title (1 to {MAX_TITLE} characters)."
    elif len(title) > MAX_TITLE:
        errors["title"] = _too_long("The title", MAX_TITLE, len(title))

    problem = entries["problem"].strip()
    if not problem:
        errors["problem"] = f"Describe the problem (1 to {MAX_TEXT:,} characters)."
    elif len(problem) > MAX_TEXT:
        errors["problem"] = _too_long("The problem", MAX_TEXT, len(problem))

    suggestion = entries["suggestion"].strip()
    if not suggestion:
        errors["suggestion"] = f"Describe the change you suggest (1 to {MAX_TEXT:,} characters)."
    elif len(suggestion) > MAX_TEXT:
        errors["suggestion"] = _too_long("The suggested change", MAX_TEXT, len(suggestion))

    service_area = _service_area(entries["service_area"])
    if not entries["service_area"].strip():
        errors["service_area"] = "Choose the service area the idea is about."
    elif service_area is None:
        errors["service_area"] = (
            f"“{_shown(entries['service_area'])}” is not one of the service areas: "
            "choose one from the list."
        )

    principles: list[int] = []
    for choice in _choices(entries["principles"]):
        number = int(choice) if choice.isascii() and choice.isdigit() and len(choice) < 4 else None
        if number is None or number not in principle_numbers:
            errors["principles"] = (
                f"“{_shown(choice)}” is not one of the design principles: choose from the list."
            )
            break
        principles.append(number)
    else:
        if not principles:
            errors["principles"] = "Choose at least one design principle the idea serves."

    benefits: list[str] = []
    for choice in _choices(entries["benefits"]):
        if choice not in BENEFITS:
            errors["benefits"] = (
                f"“{_shown(choice)}” is not one of the benefits: choose "
                f"{', '.join(BENEFIT_LABELS[b] for b in BENEFITS[:-1])} or "
                f"{BENEFIT_LABELS[BENEFITS[-1]]}."
            )
            break
        benefits.append(choice)
    else:
        if not benefits:
            errors["benefits"] = "Choose at least one expected benefit."

    benefit_other: str | None = None
    if "other" in benefits:
        benefit_other = " ".join(entries["benefit_other"].split())
        if not benefit_other:
            errors["benefit_other"] = (
                f"You chose “Other”: say what the benefit is (1 to {MAX_BENEFIT_OTHER} characters)."
            )
        elif len(benefit_other) > MAX_BENEFIT_OTHER:
            errors["benefit_other"] = _too_long(
                "The other benefit", MAX_BENEFIT_OTHER, len(benefit_other)
            )

    anonymous = _toggle(entries["anonymous"])
    if anonymous is None:
        # Not what the toggle sends: refuse rather than guess, since guessing "no" would
        # name someone who asked not to be named.
        errors["anonymous"] = "Choose whether to submit anonymously."

    if errors or service_area is None or anonymous is None:
        return None, entries, errors
    submission = IdeaSubmission(
        title=title,
        problem=problem,
        suggestion=suggestion,
        service_area=service_area,
        principles=tuple(sorted(set(principles))),
        benefits=tuple(b for b in BENEFITS if b in benefits),
        benefit_other=benefit_other,
        anonymous=anonymous,
    )
    return submission, entries, {}


def _choices(text: str) -> list[str]:
    """The values of a multi-select, each once, in the order sent."""
    return list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _service_area(text: str) -> str | None:
    wanted = " ".join(text.split()).casefold()
    return next((area for area in SERVICE_AREAS if area.casefold() == wanted), None)


def service_area_for(department: str | None) -> str | None:
    """The service area a directory department (or a roster's free-text area) names, for a
    form's default: the same words in any case, or one's words found within the other's
    ("Housing Services" is Housing, "ICT" is ICT and Digital). None when nothing or more
    than one area fits: no default is better than a wrong one."""
    wanted = _words(department or "")
    if not wanted:
        return None
    exact = [area for area in SERVICE_AREAS if _words(area) == wanted]
    if exact:
        return exact[0]
    # "Other" is a choice of last resort, never something a department contains.
    fits = [
        area
        for area in SERVICE_AREAS
        if area != "Other" and (_contains(wanted, _words(area)) or _contains(_words(area), wanted))
    ]
    return fits[0] if len(fits) == 1 else None


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", text.casefold().replace("&", " and ")))


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    """Whether `part` appears in `words` as consecutive whole words."""
    size = len(part)
    return any(words[start : start + size] == part for start in range(len(words) - size + 1))


def _toggle(text: str) -> bool | None:
    # Missing (an older card, a crafted one) means not anonymous, as the toggle starts off.
    return {"true": True, "false": False, "": False}.get(text.strip().casefold())


def _shown(text: str, limit: int = 40) -> str:
    """What was typed, on one line and short enough to quote back in an error."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _too_long(what: str, limit: int, length: int) -> str:
    return f"{what} must be {limit:,} characters or fewer (this is {length:,})."


# --- similar ideas (pure) -------------------------------------------------------------------

# Two ideas scoring at least this, on their title, problem and suggestion together, look
# alike. Measured on council ideas: rewordings of one idea score about 0.55 to 0.65, different
# ideas that share a word or two ("online", "pay") 0.1 to 0.3. Meant for whole ideas: two
# titles of two words that share one score near the threshold either way.
SIMILAR_THRESHOLD = 0.45

# Words that say nothing about what an idea is about: common English, and words nearly every
# idea at a council uses.
_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each etc every few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just lot lots many may me might more most much must my myself no nor
    not now of off on once one only or other our ours ourselves out over own please really she
    should so some still such than that the their theirs them themselves then there these they
    this those through to too under until up us very via was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    able allow always answer apply better change currently day days easier faster fewer fill
    find get give go help idea improve instead keep know less let make need never new often
    problem put quicker rather reduce see send simpler sometimes start stop suggest suggestion
    take thing things think time times try use want way ways
    council colleague customer people resident staff team
    """.split()
)

# Words council officers use for the same thing; each group's words count as its first.
_SYNONYM_GROUPS = (
    ("form", "paperwork"),
    ("phone", "call", "telephone", "ring", "callback"),
    ("email", "mail", "inbox"),
    ("website", "online", "portal", "web", "internet", "webpage", "digital"),
    ("print", "printing", "paper", "printer", "printout", "hardcopy"),
    ("duplicate", "double", "twice", "repeat", "duplication", "same", "rekey", "retype", "reenter"),
    ("letter", "post", "postage", "envelope"),
    ("bin", "rubbish", "refuse", "waste", "litter"),
    ("payment", "pay", "fee", "invoice"),
    ("approval", "approve", "signoff", "authorise", "authorize", "authorisation"),
    ("appointment", "booking", "book", "slot"),
    ("spreadsheet", "excel"),
    ("computer", "laptop", "pc", "desktop", "device"),
    ("automate", "automatic", "automatically", "automation", "manual", "manually", "hand"),
    ("scan", "scanner", "digitise", "digitize"),
    ("queue", "wait", "waiting", "hold", "delay"),
    ("text", "sms"),
    ("vehicle", "car", "van", "fleet"),
)


def similarity(a: str, b: str) -> float:
    """How alike two texts are in what they say, from 0 (nothing shared) to 1.

    Both are reduced to the words that carry meaning: lower-cased, punctuation dropped, common
    words left out, each word cut to a crude stem ("forms", "printing", "printed" → "form",
    "print") and mapped to its group in a small table of council synonyms ("paperwork" →
    "form", "telephone" → "phone", "online" → "website"). The score is the share of those
    words the texts have in common (Dice), blended with rapidfuzz's token_set_ratio of them,
    which forgives small misspellings. See SIMILAR_THRESHOLD for what counts as alike.
    """
    (words_a, sorted_a), (words_b, sorted_b) = _meaning(a), _meaning(b)
    if not words_a or not words_b:
        return 0.0
    shared = 2 * len(words_a & words_b) / (len(words_a) + len(words_b))
    fuzzy = fuzz.token_set_ratio(sorted_a, sorted_b) / 100
    return round(0.7 * shared + 0.3 * fuzzy, 4)


@functools.lru_cache(maxsize=4096)
def _meaning(text: str) -> tuple[frozenset[str], str]:
    """The text's meaning words, as a set and sorted into one string. Cached: every new idea
    is compared with every open one, and stemming them all again each time cost 0.1-0.3 ms
    an idea, on the event loop (200 ideas submitted at once spent seconds of it there)."""
    words = frozenset(_meaning_words(text))
    return words, " ".join(sorted(words))


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 5 and word.endswith("ing"):
        word = _undouble(word[:-3])
    elif len(word) > 4 and word.endswith("ed"):
        word = _undouble(word[:-2])
    elif len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes", "zes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    # "phone", "phoned", "phoning" all become "phon".
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    """ "scann" (from "scanning") → "scan"; "call" stays."""
    if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
        return word[:-1]
    return word


_SYNONYMS = {_stem(word): _stem(group[0]) for group in _SYNONYM_GROUPS for word in group}
_STOP_STEMS = frozenset(_stem(word) for word in _STOP_WORDS) - set(_SYNONYMS)
_APOSTROPHES = re.compile(r"['’]")
_JOINED = re.compile(r"(?<=\w)-(?=\w)")  # e-mail, sign-off, re-enter


def _meaning_words(text: str) -> list[str]:
    text = _JOINED.sub("", _APOSTROPHES.sub("", text.casefold()))
    words = []
    for word in re.findall(r"\w+", text):
        if word in _STOP_WORDS:
            continue
        stem = _stem(word)
        if len(stem) < 2 or stem in _STOP_STEMS:
            continue
        words.append(_SYNONYMS.get(stem, stem))
    return words


def _idea_text(title: str, problem: str, suggestion: str) -> str:
    return f"{title}\n{problem}\n{suggestion}"


# --- submitting and supporting --------------------------------------------------------------


async def similar_open_ideas(
    session: AsyncSession, *, submission: IdeaSubmission, limit: int = 3
) -> list[IdeaView]:
    """Open ideas (not implemented, not taken forward, not duplicates) that look like the
    submission, most alike first, only those at or above SIMILAR_THRESHOLD."""
    wanted = _idea_text(submission.title, submission.problem, submission.suggestion)
    rows = await session.exec(select(Idea).where(col(Idea.status).in_(OPEN_STATUSES)))
    scored = [
        (similarity(wanted, _idea_text(idea.title, idea.problem, idea.suggestion)), idea)
        for idea in rows
    ]
    alike = sorted(
        ((score, idea) for score, idea in scored if score >= SIMILAR_THRESHOLD),
        key=lambda pair: (-pair[0], -(pair[1].id or 0)),
    )
    return await _views(session, [idea for _, idea in alike[:limit]])


async def submit_idea(
    session: AsyncSession,
    *,
    submitter_id: int,
    submission: IdeaSubmission,
    form_id: str,
    mir_action_id: int | None = None,
) -> tuple[IdeaView, bool]:
    """Store a new idea (status "new") and its first history entry.

    The same submitter's form id stored before (a second press, Teams delivering the activity
    again, even both at once) stores nothing and returns that idea with False; so does a
    Making It Real action already turned into an idea.
    """
    if not 1 <= len(form_id) <= 64:
        raise ValueError("a form id is 1 to 64 characters")
    now = utcnow()
    values = {
        "title": submission.title,
        "problem": submission.problem,
        "suggestion": submission.suggestion,
        "service_area": submission.service_area,
        "principles": list(submission.principles),
        "benefits": list(submission.benefits),
        "benefit_other": submission.benefit_other,
        "anonymous": submission.anonymous,
        "submitter_id": submitter_id,
        "status": "new",
        "form_id": form_id,
        "mir_action_id": mir_action_id,
        "created_at": now,
        "updated_at": now,
        "status_changed_at": now,
    }
    # INSERT ... ON CONFLICT DO NOTHING: of two presses racing, the second waits for the
    # first's commit and then inserts nothing, instead of failing.
    inserted = await session.exec(_insert(session, Idea).values(values).on_conflict_do_nothing())
    created = bool(inserted.rowcount)
    idea = (
        await session.exec(
            select(Idea).where(Idea.submitter_id == submitter_id, Idea.form_id == form_id)
        )
    ).first()
    if idea is None and mir_action_id is not None:
        idea = (await session.exec(select(Idea).where(Idea.mir_action_id == mir_action_id))).first()
    if idea is None:  # the only unique constraints are the two looked up above
        raise RuntimeError("an idea that was not stored cannot be found")
    if created:
        session.add(IdeaEvent(idea_id=idea.id or 0, from_status=None, to_status="new", at=now))
        await session.flush()
    return (await _views(session, [idea]))[0], created


async def support_idea(
    session: AsyncSession, *, idea_id: int, person_id: int
) -> tuple[IdeaView, str]:
    """Add the person's support: "supported", "already" (a second press changes nothing) or
    "own" (nobody supports their own idea, anonymous or not)."""
    idea = await _idea(session, idea_id)
    if idea.submitter_id == person_id:
        return (await _views(session, [idea]))[0], "own"
    statement = (
        _insert(session, IdeaSupport)
        .values(idea_id=idea.id, person_id=person_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["idea_id", "person_id"])
    )
    added = await session.exec(statement)
    outcome = "supported" if added.rowcount else "already"
    return (await _views(session, [idea]))[0], outcome


# --- reading --------------------------------------------------------------------------------


async def get_idea(session: AsyncSession, *, idea_id: int) -> IdeaView:
    return (await _views(session, [await _idea(session, idea_id)]))[0]


async def my_ideas(session: AsyncSession, *, submitter_id: int) -> list[IdeaView]:
    """The person's own ideas, newest first. An anonymous one still has submitted_by None:
    the card says "you"."""
    rows = await session.exec(
        select(Idea)
        .where(Idea.submitter_id == submitter_id)
        .order_by(col(Idea.created_at).desc(), col(Idea.id).desc())
    )
    return await _views(session, list(rows))


async def history(session: AsyncSession, *, idea_id: int) -> list[IdeaEventView]:
    """The idea's history, oldest first: submitted ("new", by nobody), then each change."""
    idea = await _idea(session, idea_id)
    events = await _events(session, [idea.id or 0])
    names = await _names(session, {e.actor_id for e in events if e.actor_id is not None})
    return [
        IdeaEventView(
            to_status=event.to_status,
            status_label=STATUS_LABELS[event.to_status],
            reason=event.reason,
            by=_actor_name(idea, event.actor_id, names),
            at=aware(event.at),
        )
        for event in events
    ]


async def people_to_notify(session: AsyncSession, *, idea_id: int) -> list[int]:
    """Who hears about a change: the submitter first (anonymous or not), then each supporter
    in the order they supported it."""
    idea = await _idea(session, idea_id)
    supporters = await session.exec(
        select(IdeaSupport.person_id)
        .where(IdeaSupport.idea_id == idea.id)
        .order_by(col(IdeaSupport.created_at), col(IdeaSupport.id))
    )
    return list(dict.fromkeys([idea.submitter_id, *supporters]))


async def list_ideas(
    session: AsyncSession,
    *,
    status: str | None = None,
    service_area: str | None = None,
    principle: int | None = None,
    most_supported: bool = False,
    limit: int | None = None,
) -> list[IdeaView]:
    """Ideas matching every filter given: newest first, or with `most_supported` the most
    supported first (newest first among equals)."""
    statement = select(Idea)
    if status is not None:
        statement = statement.where(Idea.status == status)
    if service_area is not None:
        statement = statement.where(Idea.service_area == service_area)
    rows = [
        idea
        for idea in await session.exec(statement)
        if principle is None or principle in idea.principles
    ]
    views = await _views(session, rows)
    newest_first = sorted(views, key=lambda v: (v.created_at, v.id), reverse=True)
    if most_supported:
        newest_first.sort(key=lambda v: -v.supporters)  # stable: newest first among equals
    return newest_first if limit is None else newest_first[:limit]


_FILTER_HELP = (
    "Try **ideas new**, **ideas under review** (or another status), **ideas housing** (a "
    "service area), **ideas principle 3** or **ideas most supported**."
)
_STATUS_TITLES = {
    "new": "New ideas",
    "under_review": "Ideas under review",
    "accepted": "Accepted ideas",
    "in_progress": "Ideas in progress",
    "implemented": "Implemented ideas",
    "not_taken_forward": "Ideas not taken forward",
    "duplicate": "Duplicate ideas",
}
_PRINCIPLE = re.compile(r"(?:design\s+)?principles?\s*(\d{1,3})", re.ASCII)


def parse_ideas_filter(argument: str) -> tuple[dict[str, object], str]:
    """What `ideas <argument>` asks for: (list_ideas keyword arguments, a title for the list).

    A status ("new", "under review", "not_taken_forward"), a service area ("housing"),
    "principle 3" or "most supported"; nothing means all ideas. Anything else raises
    ValueError with a message saying what can be asked.
    """
    wanted = " ".join(argument.replace("_", " ").split()).casefold()
    if not wanted or wanted in ("all", "everything"):
        return {}, "All ideas"
    if wanted in ("most supported", "top", "popular"):
        return {"most_supported": True}, "Most supported ideas"
    for status in STATUSES:
        if wanted in (STATUS_LABELS[status].casefold(), status.replace("_", " ")):
            return {"status": status}, _STATUS_TITLES[status]
    area = _service_area(wanted)
    if area is not None:
        return {"service_area": area}, f"Ideas for {area}"
    principle = _PRINCIPLE.fullmatch(wanted)
    if principle:
        number = int(principle.group(1))
        if number not in PRINCIPLE_NUMBERS:
            raise ValueError(
                f"There are {len(PRINCIPLE_NUMBERS)} design principles: ask for principle "
                f"{PRINCIPLE_NUMBERS[0]} to {PRINCIPLE_NUMBERS[-1]}."
            )
        return {"principle": number}, f"Ideas serving design principle {number}"
    raise ValueError(f"I can't filter ideas by “{_shown(argument)}”. {_FILTER_HELP}")


# --- the workflow ---------------------------------------------------------------------------


async def change_status(
    session: AsyncSession,
    *,
    idea_id: int,
    to_status: str,
    actor_id: int | None,
    reason: str | None,
    duplicate_of: str | None = None,
) -> IdeaView:
    """Move an idea on and record who did it and why.

    Refused with IllegalTransition: a move TRANSITIONS does not allow; not_taken_forward
    without a reason; duplicate without the reference of another idea that exists and is not
    itself a duplicate. Two admins pressing at once: only one moves it; the other is told it
    has already moved.
    """
    idea = await _idea(session, idea_id)
    this = reference(idea.id or 0)
    from_status = idea.status
    if to_status not in STATUSES:
        raise IllegalTransition(f"“{_shown(to_status)}” is not a status an idea can have.")
    if to_status not in TRANSITIONS[from_status]:
        raise IllegalTransition(_refusal(this, from_status, to_status))
    reason = (reason or "").strip() or None
    if to_status == "not_taken_forward" and reason is None:
        raise IllegalTransition(
            f"Say why {this} is not taken forward: the submitter and supporters will see it."
        )
    if reason is not None and len(reason) > MAX_REASON:
        raise IllegalTransition(_too_long("The reason", MAX_REASON, len(reason)))
    duplicate_of_id = (
        await _original(session, idea, duplicate_of) if to_status == "duplicate" else None
    )
    now = utcnow()
    # Only if it is still where this admin saw it: of two presses at once, PostgreSQL re-checks
    # the WHERE after the first one's commit and SQLite runs the writers one at a time, so
    # exactly one of them moves it.
    moved = await session.exec(
        update(Idea)
        .where(col(Idea.id) == idea.id, col(Idea.status) == from_status)
        .values(
            status=to_status,
            duplicate_of_id=duplicate_of_id,
            status_changed_at=now,
            updated_at=now,
        )
    )
    await session.refresh(idea)
    if moved.rowcount != 1:
        raise IllegalTransition(
            f"{this} has already been moved to {STATUS_LABELS[idea.status]} by someone else."
        )
    session.add(
        IdeaEvent(
            idea_id=idea.id or 0,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor_id,
            reason=reason,
            duplicate_of_id=duplicate_of_id,
            at=now,
        )
    )
    await audit.record(
        session,
        action="idea.status",
        actor_id=actor_id,
        actor="person" if actor_id is not None else "system",
        subject=f"idea:{idea.id}",
        detail={"from": from_status, "to": to_status}
        | ({"duplicate_of": f"idea:{duplicate_of_id}"} if duplicate_of_id else {}),
        at=now,
    )
    return (await _views(session, [idea]))[0]


def _refusal(this: str, from_status: str, to_status: str) -> str:
    now_label, wanted = STATUS_LABELS[from_status], STATUS_LABELS[to_status]
    if from_status == to_status:
        return f"{this} is already {now_label}."
    if not TRANSITIONS[from_status]:
        return f"{this} is {now_label}, which is final: it can't move to {wanted}."
    options = [STATUS_LABELS[s] for s in TRANSITIONS[from_status]]
    choices = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]
    return f"{this} is {now_label}: it can move to {choices}, not {wanted}."


async def _original(session: AsyncSession, idea: Idea, duplicate_of: str | None) -> int:
    """The id of the idea `idea` duplicates, from the reference the admin typed."""
    this = reference(idea.id or 0)
    if not (duplicate_of or "").strip():
        raise IllegalTransition(
            f"Give the reference of the idea {this} duplicates, for example IDEA-0001."
        )
    original_id = parse_reference(duplicate_of)
    if original_id is None:
        raise IllegalTransition(
            f"“{_shown(duplicate_of or '')}” is not an idea reference: write it like IDEA-0001."
        )
    if original_id == idea.id:
        raise IllegalTransition(f"{this} can't be a duplicate of itself.")
    original = await session.get(Idea, original_id)
    if original is None:
        raise IllegalTransition(f"There is no idea {reference(original_id)}.")
    if original.status == "duplicate":
        first = reference(original.duplicate_of_id or 0)
        raise IllegalTransition(
            f"{reference(original_id)} is itself a duplicate of {first}: use {first} instead."
        )
    return original_id


# --- ideas waiting for triage ---------------------------------------------------------------


def working_days_between(start: date, end: date) -> int:
    """The working days after `start` up to and including `end`: Monday to Friday only.
    Bank holidays are not known here, so they count as working days. 0 if end <= start."""
    days = (end - start).days
    if days <= 0:
        return 0
    weeks, rest = divmod(days, 7)
    tail_start = start + timedelta(days=weeks * 7)
    tail = sum(1 for n in range(1, rest + 1) if (tail_start + timedelta(days=n)).weekday() < 5)
    return weeks * 5 + tail


async def stale_new_ideas(
    session: AsyncSession, *, today: date, working_days: int = 5, zone: tzinfo = UTC
) -> list[IdeaView]:
    """Ideas still "new" more than `working_days` working days after they were submitted
    (counted from the day of submission in `zone`, the council's time zone, as `today` is),
    oldest first."""
    rows = await session.exec(
        select(Idea).where(Idea.status == "new").order_by(col(Idea.created_at), col(Idea.id))
    )
    stale = [
        idea
        for idea in rows
        if working_days_between(aware(idea.created_at).astimezone(zone).date(), today)
        > working_days
    ]
    return await _views(session, stale)


# --- the triage channel and its posts -------------------------------------------------------


async def get_triage_channel(session: AsyncSession) -> str | None:
    """The conversation id of the channel new ideas are posted to, if one was set."""
    # Columns, not the ORM row: an upsert earlier in this session does not refresh a cached row.
    stored = (
        await session.exec(select(Setting.value).where(Setting.key == TRIAGE_CHANNEL))
    ).first()
    value = stored.get("conversation_id") if isinstance(stored, dict) else None
    return value if isinstance(value, str) else None


async def set_triage_channel(session: AsyncSession, *, conversation_id: str, set_by: int) -> None:
    now = utcnow()
    value = {"conversation_id": conversation_id, "set_by": set_by}
    statement = (
        _insert(session, Setting)
        .values(key=TRIAGE_CHANNEL, value=value, updated_at=now)
        .on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now})
    )
    await session.exec(statement)
    await audit.record(
        session,
        action="triage.channel",
        actor_id=set_by,
        actor="person",
        subject=f"setting:{TRIAGE_CHANNEL}",
        at=now,
    )


async def record_triage_post(
    session: AsyncSession, *, idea_id: int, conversation_id: str, activity_id: str
) -> None:
    """Remember where the idea's triage card was posted (a repost replaces it)."""
    idea = await _idea(session, idea_id)
    now = utcnow()
    statement = (
        _insert(session, IdeaTriagePost)
        .values(
            idea_id=idea.id,
            conversation_id=conversation_id,
            activity_id=activity_id,
            posted_at=now,
        )
        .on_conflict_do_update(
            index_elements=["idea_id"],
            set_={"conversation_id": conversation_id, "activity_id": activity_id, "posted_at": now},
        )
    )
    await session.exec(statement)


async def triage_post(session: AsyncSession, *, idea_id: int) -> tuple[str, str] | None:
    """(conversation id, activity id) of the idea's triage card, or None if not posted."""
    if not 1 <= idea_id <= _MAX_ID:
        return None
    post = (
        await session.exec(
            select(IdeaTriagePost.conversation_id, IdeaTriagePost.activity_id).where(
                IdeaTriagePost.idea_id == idea_id
            )
        )
    ).first()
    return (post[0], post[1]) if post else None


# --- export ---------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "reference",
    "title",
    "problem",
    "suggestion",
    "service_area",
    "principles",
    "benefits",
    "status",
    "supporters",
    "submitted_by",
    "submitted_at",
    "history",
)


async def idea_of_form(
    session: AsyncSession, *, submitter_id: int, form_id: str
) -> IdeaView | None:
    """The idea this person already submitted with this form, if any (a second press)."""
    found = (
        await session.exec(
            select(Idea).where(Idea.submitter_id == submitter_id, Idea.form_id == form_id)
        )
    ).first()
    return (await _views(session, [found]))[0] if found is not None else None


async def ideas_of_actions(session: AsyncSession, *, action_ids: Collection[int]) -> dict[int, str]:
    """Making It Real action id -> the reference of the idea it became, for those that did."""
    wanted = [i for i in action_ids if isinstance(i, int)]
    if not wanted:
        return {}
    rows = await session.exec(
        select(Idea.mir_action_id, Idea.id).where(col(Idea.mir_action_id).in_(wanted))
    )
    return {action_id: reference(idea_id) for action_id, idea_id in rows if action_id and idea_id}


async def export_rows(session: AsyncSession) -> list[dict[str, str]]:
    """Every idea, oldest first, as text for a spreadsheet (EXPORT_COLUMNS).

    submitted_by is blank for an anonymous idea; submitted_at is "YYYY-MM-DD HH:MM UTC".
    history has one line per step, "date status, by who: reason" ("by" only for changes an
    admin made, never an anonymous submitter).
    """
    ideas = list(await session.exec(select(Idea).order_by(col(Idea.id))))
    views = await _views(session, ideas)
    events = await _events(session, [idea.id or 0 for idea in ideas])
    names = await _names(session, {e.actor_id for e in events if e.actor_id is not None})
    events_of: dict[int, list[IdeaEvent]] = defaultdict(list)
    for event in events:
        events_of[event.idea_id].append(event)
    rows = []
    for idea, view in zip(ideas, views, strict=True):
        benefits = [
            f"Other: {view.benefit_other}"
            if b == "other" and view.benefit_other
            else BENEFIT_LABELS[b]
            for b in view.benefits
        ]
        steps = [_history_line(idea, e, names) for e in events_of[idea.id or 0]]
        rows.append(
            {
                "reference": view.reference,
                "title": view.title,
                "problem": view.problem,
                "suggestion": view.suggestion,
                "service_area": view.service_area,
                "principles": ", ".join(str(p) for p in view.principles),
                "benefits": "; ".join(benefits),
                "status": view.status_label,
                "supporters": str(view.supporters),
                "submitted_by": view.submitted_by or "",
                "submitted_at": f"{view.created_at:%Y-%m-%d %H:%M} UTC",
                "history": "\n".join(steps),
            }
        )
    return rows


def _history_line(idea: Idea, event: IdeaEvent, names: Mapping[int, str]) -> str:
    line = f"{aware(event.at):%Y-%m-%d} {STATUS_LABELS[event.to_status]}"
    if event.duplicate_of_id is not None:
        line += f" of {reference(event.duplicate_of_id)}"
    by = _actor_name(idea, event.actor_id, names)
    if by:
        line += f", by {by}"
    if event.reason:
        line += f": {' '.join(event.reason.split())}"
    return line


# --- read models and shared pieces ----------------------------------------------------------


async def _idea(session: AsyncSession, idea_id: int) -> Idea:
    idea = await session.get(Idea, idea_id) if 1 <= idea_id <= _MAX_ID else None
    if idea is None:
        raise IdeaNotFound(reference(idea_id) if idea_id >= 0 else str(idea_id))
    return idea


async def _views(session: AsyncSession, ideas: Sequence[Idea]) -> list[IdeaView]:
    """The read models of the ideas, in the same order, with as few queries as possible."""
    ids = [idea.id or 0 for idea in ideas]
    if not ids:
        return []
    counts = await session.exec(
        select(IdeaSupport.idea_id, func.count())
        .where(col(IdeaSupport.idea_id).in_(ids))
        .group_by(col(IdeaSupport.idea_id))
    )
    supporters: dict[int, int] = {idea_id: count for idea_id, count in counts}
    latest: dict[int, IdeaEvent] = {}
    for event in await _events(session, ids):
        if event.from_status is not None:  # a change, not the submission
            latest[event.idea_id] = event
    names = await _names(
        session,
        {idea.submitter_id for idea in ideas if not idea.anonymous}
        | {e.actor_id for e in latest.values() if e.actor_id is not None},
    )
    views = []
    for idea in ideas:
        idea_id = idea.id or 0
        change = latest.get(idea_id)
        views.append(
            IdeaView(
                id=idea_id,
                reference=reference(idea_id),
                title=idea.title,
                problem=idea.problem,
                suggestion=idea.suggestion,
                service_area=idea.service_area,
                principles=tuple(idea.principles),
                benefits=tuple(idea.benefits),
                benefit_other=idea.benefit_other,
                status=idea.status,
                status_label=STATUS_LABELS[idea.status],
                submitted_by=None if idea.anonymous else names.get(idea.submitter_id),
                supporters=supporters.get(idea_id, 0),
                created_at=aware(idea.created_at),
                status_changed_at=aware(idea.status_changed_at),
                last_reason=change.reason if change else None,
                last_changed_by=_actor_name(idea, change.actor_id, names) if change else None,
                duplicate_of=reference(idea.duplicate_of_id) if idea.duplicate_of_id else None,
                next_statuses=TRANSITIONS[idea.status],
                from_mir_session=idea.mir_action_id is not None,
            )
        )
    return views


async def _events(session: AsyncSession, idea_ids: Iterable[int]) -> list[IdeaEvent]:
    rows = await session.exec(
        select(IdeaEvent)
        .where(col(IdeaEvent.idea_id).in_(list(idea_ids)))
        .order_by(col(IdeaEvent.at), col(IdeaEvent.id))
    )
    return list(rows)


async def _names(session: AsyncSession, person_ids: Collection[int]) -> dict[int, str]:
    if not person_ids:
        return {}
    people = await session.exec(select(Person).where(col(Person.id).in_(list(person_ids))))
    return {person.id or 0: name_of(person) for person in people}


def _actor_name(idea: Idea, actor_id: int | None, names: Mapping[int, str]) -> str | None:
    """Who made a change, unless that would name an anonymous idea's submitter (an admin
    moving their own anonymous idea): then nobody is named."""
    if actor_id is None or (idea.anonymous and actor_id == idea.submitter_id):
        return None
    return names.get(actor_id)


def _insert(session: AsyncSession, table: type[Any]) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"No race-safe insert for the {dialect!r} dialect")
