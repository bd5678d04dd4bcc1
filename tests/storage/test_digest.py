"""The weekly digest's content: ISO weeks from local midnight to local midnight across the clock
changes; a known week counted exactly (sessions by the council's dates, ideas and updates by
their moments, each edge of the period on the right side); nobody named on the card made from
it; and a card under 40 KB with thousands of rows of every kind."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from cards import render_card
from storage.db import create_engine, session_factory, transaction
from storage.digest import Digest, build_digest, week_period
from storage.models import (
    Idea,
    IdeaEvent,
    IdeaSupport,
    MirSession,
    Person,
    Project,
    ProjectUpdate,
    Workstream,
)
from tests.support.card_checks import check_valid_small_and_plain
from tests.support.card_checks import texts as card_texts
from tests.support.card_schema import (
    SchemaUnavailable,
    TeamsCardValidator,
    load_adaptive_card_schema,
)
from tests.support.people import add_person

LONDON = ZoneInfo("Europe/London")
MAX_DIGEST_BYTES = 40 * 1024

# ISO week 2022-W24: Monday 13 June 00:00 BST (12 June 23:00 UTC) to Monday 20 June 00:00 BST.
START = datetime(2022, 6, 12, 23, 0, tzinfo=UTC)
END = datetime(2022, 6, 19, 23, 0, tzinfo=UTC)


def utc(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2022, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def validator() -> TeamsCardValidator:
    try:
        return TeamsCardValidator(load_adaptive_card_schema())
    except SchemaUnavailable as error:
        pytest.fail(f"The Adaptive Card schema is unavailable: {error}", pytrace=False)


# --- weeks ------------------------------------------------------------------------------------


def test_an_iso_week_runs_from_local_midnight_to_local_midnight() -> None:
    assert week_period("2022-W24", LONDON) == (START, END)
    assert week_period(" 2022-w24 ", LONDON) == (START, END)
    assert week_period("2022W24", LONDON) == (START, END)
    # In winter London is on UTC; week 1 of 2021 starts on Monday 4 January.
    assert week_period("2021-W1", LONDON) == (
        datetime(2021, 1, 4, tzinfo=UTC),
        datetime(2021, 1, 11, tzinfo=UTC),
    )
    assert week_period("2022-W24", UTC) == (
        datetime(2022, 6, 13, tzinfo=UTC),
        datetime(2022, 6, 20, tzinfo=UTC),
    )


def test_weeks_with_a_clock_change_are_an_hour_shorter_or_longer() -> None:
    # Clocks go forward on Sunday 27 March 2022 and back on Sunday 30 October 2022.
    spring_start, spring_end = week_period("2022-W12", LONDON)
    assert spring_start == datetime(2022, 3, 21, tzinfo=UTC)
    assert spring_end == datetime(2022, 3, 27, 23, tzinfo=UTC)
    assert spring_end - spring_start == timedelta(hours=167)
    autumn_start, autumn_end = week_period("2022-W43", LONDON)
    assert autumn_start == datetime(2022, 10, 23, 23, tzinfo=UTC)
    assert autumn_end == datetime(2022, 10, 31, tzinfo=UTC)
    assert autumn_end - autumn_start == timedelta(hours=169)
    for moment in (spring_start, spring_end, autumn_start, autumn_end):
        assert moment.astimezone(LONDON).time() == time(0, 0)


def test_a_53rd_week_only_in_years_that_have_one() -> None:
    assert week_period("2020-W53", LONDON)[0] == datetime(2020, 12, 28, tzinfo=UTC)
    with pytest.raises(ValueError, match="2022 has no week 53"):
        week_period("2022-W53", LONDON)


@pytest.mark.parametrize(
    "text", ["", "2022", "2022-24", "2022-W", "2022-W0", "2022-W54", "22-W24", "June", "2022-W24-1"]
)
def test_anything_else_is_not_a_week(text: str) -> None:
    with pytest.raises(ValueError, match="week"):
        week_period(text, LONDON)


# --- a known week -----------------------------------------------------------------------------


@pytest.fixture
async def own_database(fresh_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A database of its own, so the running figures count only this test's people, and its
    seeded projects put aside (closing) so only the test's projects are active."""
    engine = create_engine(fresh_database_url)
    sessions = session_factory(engine)
    async with transaction(sessions) as session:
        await session.exec(update(Project).values(stage="closing"))
    try:
        yield sessions
    finally:
        await engine.dispose()


class Story:
    """Rows written with the moments a test chooses (nothing here reads the clock)."""

    def __init__(self, session: AsyncSession, workstream_id: int) -> None:
        self.session = session
        self.workstream_id = workstream_id

    async def person(self, name: str) -> int:
        person = Person(name=name, email=f"{uuid.uuid4().hex}@cambridge.gov.uk")
        self.session.add(person)
        await self.session.flush()
        return person.id or 0

    def mir_session(
        self, change_maker: int, status: str, day: date, team: str, attendees: int | None = None
    ) -> None:
        self.session.add(
            MirSession(
                change_maker_id=change_maker,
                status=status,
                session_date=day,
                start_time=time(10, 0),
                team=team,
                attendees=attendees,
            )
        )

    async def idea(
        self,
        title: str,
        submitter: int,
        created: datetime,
        *,
        status: str = "new",
        anonymous: bool = False,
        implemented: datetime | None = None,
        reason: str | None = None,
        actor: int | None = None,
        supporters: tuple[tuple[int, datetime], ...] = (),
    ) -> int:
        idea = Idea(
            title=title,
            problem="A problem.",
            suggestion="A suggestion.",
            service_area="Customer Services",
            principles=[1],
            benefits=["time_saved"],
            anonymous=anonymous,
            submitter_id=submitter,
            status=status,
            form_id=uuid.uuid4().hex,
            created_at=created,
            updated_at=created,
            status_changed_at=implemented or created,
        )
        self.session.add(idea)
        await self.session.flush()
        idea_id = idea.id or 0
        self.session.add(IdeaEvent(idea_id=idea_id, to_status="new", at=created))
        if implemented is not None:
            self.session.add(
                IdeaEvent(
                    idea_id=idea_id,
                    from_status="in_progress",
                    to_status="implemented",
                    actor_id=actor,
                    reason=reason,
                    at=implemented,
                )
            )
        for person_id, at in supporters:
            self.session.add(IdeaSupport(idea_id=idea_id, person_id=person_id, created_at=at))
        return idea_id

    async def project(self, name: str, *, stage: str = "active") -> int:
        project = Project(
            slug=f"p-{uuid.uuid4().hex[:12]}",
            name=name,
            workstream_id=self.workstream_id,
            stage=stage,
        )
        self.session.add(project)
        await self.session.flush()
        return project.id or 0

    def update(
        self, project_id: int, month: int, rag: str | None, posted: datetime, text: str = "Text"
    ) -> None:
        self.session.add(
            ProjectUpdate(
                project_id=project_id,
                month=date(2022, month, 1),
                text=text,
                rag=rag,
                author="Sam Author",
                source=f"test:{uuid.uuid4().hex}",
                created_at=posted,
            )
        )


async def _story(session: AsyncSession) -> Story:
    workstream = (await session.exec(select(Workstream))).first()
    assert workstream is not None
    return Story(session, workstream.id or 0)


async def _digest(
    sessions: async_sessionmaker[AsyncSession], start: datetime, end: datetime
) -> Digest:
    async with transaction(sessions) as session:
        return await build_digest(session, start=start, end=end, zone=LONDON)


# The people of the story: none of this may appear on the digest card.
NAMES = (
    "Ahmed Maker",
    "Bea Maker",
    "Cal Maker",
    "Priya Submitter",
    "Fan 0",
    "Sam Admin",
    "Sam Author",
    "@cambridge.gov.uk",
)


async def _write_the_week(sessions: async_sessionmaker[AsyncSession]) -> None:
    ahmed = await add_person(sessions, "Ahmed Maker", service_area="Revenues", reachable=True)
    bea = await add_person(sessions, "Bea Maker", service_area="Housing")
    await add_person(sessions, "Cal Maker")
    async with transaction(sessions) as session:
        story = await _story(session)
        priya = await story.person("Priya Submitter")
        admin = await story.person("Sam Admin")
        fans = [await story.person(f"Fan {n}") for n in range(4)]

        # Sessions: held on the week's first and last days count; the day before and the
        # cancelled one do not. Next week runs from Monday 20 to Sunday 26 June.
        story.mir_session(bea, "held", date(2022, 6, 12), "Housing options", 4)
        story.mir_session(bea, "held", date(2022, 6, 13), "Benefits team", 6)
        story.mir_session(ahmed, "held", date(2022, 6, 19), "Council tax team", 9)
        story.mir_session(ahmed, "cancelled", date(2022, 6, 15), "Cancelled team")
        story.mir_session(ahmed, "scheduled", date(2022, 6, 26), "Revenues team")
        story.mir_session(ahmed, "scheduled", date(2022, 6, 20), "Customer service centre")
        story.mir_session(ahmed, "scheduled", date(2022, 6, 27), "Too late team")

        # Ideas: submitted exactly at the start counts, exactly at the end does not.
        await story.idea("At the start", priya, START)
        await story.idea(
            "Anonymous and supported",
            priya,
            utc(6, 15),
            anonymous=True,
            supporters=((fans[0], utc(6, 16)), (fans[1], END)),  # the second is after the end
        )
        await story.idea("Just before the end", priya, END - timedelta(minutes=1))
        await story.idea("At the end", priya, END)
        await story.idea("Last week", priya, START - timedelta(minutes=1))
        await story.idea(
            "Most supported",
            priya,
            utc(5, 3),
            status="accepted",
            supporters=tuple((fan, utc(5, 10)) for fan in fans[:3]),
        )
        await story.idea(
            "Not taken forward",
            priya,
            utc(5, 4),
            status="not_taken_forward",
            supporters=tuple((fan, utc(5, 10)) for fan in fans),
        )
        await story.idea(
            "Scanners at the counter",
            priya,
            utc(4, 1),
            status="implemented",
            implemented=utc(6, 16),
            reason="Every counter has a scanner since Thursday.",
            actor=admin,
            supporters=tuple((fan, utc(4, 10)) for fan in fans),
        )
        await story.idea(
            "Implemented last week",
            priya,
            utc(4, 1),
            status="implemented",
            implemented=START - timedelta(seconds=1),
        )

        # Projects. A month before the end is 20 May 00:00 BST (19 May 23:00 UTC).
        website = await story.project("Website and Portals")
        story.update(website, 5, "green", utc(5, 10))
        story.update(website, 6, "red", utc(6, 15), "Supplier delays: red for June.")
        orchard = await story.project("Orchard")
        story.update(orchard, 4, "amber", utc(4, 5))
        story.update(orchard, 6, "amber", utc(6, 16), "Still amber.")
        first = await story.project("Data Strategy")
        story.update(first, 6, "green", utc(6, 14), "Our first update.")
        never = await story.project("Tascomi")
        story.update(never, 6, "green", utc(6, 21))  # posted after the end
        month_and_a_minute = await story.project("Office Accommodation")
        story.update(month_and_a_minute, 5, "green", utc(5, 19, 22, 59))
        just_a_month = await story.project("Orchard Phase Two")
        story.update(just_a_month, 5, "green", utc(5, 19, 23, 0))
        await story.project("Closing Project", stage="closing")


async def test_a_known_week_counted_exactly(
    own_database: async_sessionmaker[AsyncSession], validator: TeamsCardValidator
) -> None:
    sessions = own_database
    await _write_the_week(sessions)
    digest = await _digest(sessions, START, END)

    assert (digest.first_day, digest.last_day) == (date(2022, 6, 13), date(2022, 6, 19))
    assert not digest.quiet

    assert digest.held.total == 2 and digest.people_at_sessions == 15
    assert [(s.session_date, s.team, s.attendees) for s in digest.held.shown] == [
        (date(2022, 6, 13), "Benefits team", 6),
        (date(2022, 6, 19), "Council tax team", 9),
    ]
    # As of Monday 20 June: three held in all, three in the diary, Cal with nothing.
    totals = digest.totals
    assert (totals.change_makers, totals.sessions_held, totals.sessions_in_diary) == (3, 3, 3)
    assert totals.nothing_scheduled == 1
    assert digest.coming_up.total == 2
    assert [(s.session_date, s.team) for s in digest.coming_up.shown] == [
        (date(2022, 6, 20), "Customer service centre"),
        (date(2022, 6, 26), "Revenues team"),
    ]

    assert digest.new_ideas.total == 3
    assert [(i.title, i.supporters) for i in digest.new_ideas.shown] == [
        ("Just before the end", 0),
        ("Anonymous and supported", 1),
        ("At the start", 0),
    ]
    assert digest.most_supported.total == 2
    assert [(i.title, i.supporters) for i in digest.most_supported.shown] == [
        ("Most supported", 3),
        ("Anonymous and supported", 1),
    ]
    assert digest.implemented.total == 1
    (implemented,) = digest.implemented.shown
    assert implemented.title == "Scanners at the counter" and implemented.supporters == 4
    assert implemented.what_was_done == "Every counter has a scanner since Thursday."
    assert implemented.reference.startswith("IDEA-")

    assert (digest.updates.total, digest.rag_changes) == (3, 1)
    assert [
        (u.project_name, u.month, u.previous_rag, u.rag, u.rag_changed)
        for u in digest.updates.shown
    ] == [
        ("Website and Portals", date(2022, 6, 1), "green", "red", True),  # RAG changes first
        ("Orchard", date(2022, 6, 1), "amber", "amber", False),
        ("Data Strategy", date(2022, 6, 1), None, "green", False),  # a first update
    ]
    assert digest.updates.shown[0].text == "Supplier delays: red for June."
    assert digest.quiet_projects.total == 2
    assert [(p.name, p.last_update_on) for p in digest.quiet_projects.shown] == [
        ("Tascomi", None),  # its only update came after the end
        ("Office Accommodation", date(2022, 5, 19)),
    ]

    card = render_card("digest", digest=digest)
    check_valid_small_and_plain(validator, card, wide=True, max_bytes=MAX_DIGEST_BYTES)
    shown = json.dumps(card, ensure_ascii=False)
    for name in NAMES:
        assert name not in shown, name
    texts = card_texts(card)
    assert "2 sessions held this week, with 15 people." in texts
    assert "RAG changed from Green to Red" in texts
    assert "Tascomi · no update yet" in texts


async def test_a_week_before_anything_happened_is_quiet(
    own_database: async_sessionmaker[AsyncSession],
) -> None:
    sessions = own_database
    await _write_the_week(sessions)
    start, end = week_period("2022-W01", LONDON)
    digest = await _digest(sessions, start, end)
    assert digest.quiet
    assert (digest.held.total, digest.new_ideas.total, digest.implemented.total) == (0, 0, 0)
    assert (digest.updates.total, digest.most_supported.total, digest.coming_up.total) == (0, 0, 0)
    # Nothing had been posted yet, so every active project is waiting for its first update.
    assert digest.quiet_projects.total == 6
    assert all(p.last_update_on is None for p in digest.quiet_projects.shown)
    texts = card_texts(render_card("digest", digest=digest))
    assert any(text.startswith("A quiet week") for text in texts)


async def test_the_period_must_be_aware_and_not_empty(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as session:
        with pytest.raises(ValueError, match="aware"):
            await build_digest(session, start=START.replace(tzinfo=None), end=END, zone=LONDON)
        with pytest.raises(ValueError, match="end after it starts"):
            await build_digest(session, start=END, end=END, zone=LONDON)


async def test_a_period_given_in_another_zone_is_the_same_period(
    own_database: async_sessionmaker[AsyncSession],
) -> None:
    sessions = own_database
    await _write_the_week(sessions)
    in_utc = await _digest(sessions, START, END)
    in_london = await _digest(sessions, START.astimezone(LONDON), END.astimezone(LONDON))
    assert in_london == in_utc


# --- thousands of rows ------------------------------------------------------------------------

HOSTILE = 'He said "stop" \\ {{ 7*7 }} {% raw %} **bold** 🎉👩🏽‍💻 مرحبا بكم في كامبريدج '
LONG = (HOSTILE * 40)[:4000]
MANY = 2000


async def _write_thousands(sessions: async_sessionmaker[AsyncSession]) -> None:
    """MANY rows of every kind in the week, every text long and hostile: held and scheduled
    sessions, ideas (half implemented this week) with supporters, projects (a quarter never
    updated, a quarter last updated in May, half updated this week, half of those to red)."""
    async with transaction(sessions) as session:
        story = await _story(session)
        makers = []
        for n in range(200):
            person = Person(
                name=f"Maker {n}",
                email=f"maker.{n}.{uuid.uuid4().hex[:8]}@cambridge.gov.uk",
                roles=["change_maker"],
                in_roster=True,
            )
            session.add(person)
            makers.append(person)
        await session.flush()
        maker_ids = [person.id or 0 for person in makers]
        rows: list[Any] = []
        for n in range(MANY):
            maker = maker_ids[n % len(maker_ids)]
            day = date(2022, 6, 13 + n % 7)
            rows.append(
                MirSession(
                    change_maker_id=maker,
                    status="held",
                    session_date=day,
                    team=LONG[:200],
                    attendees=500,
                    start_time=None,
                )
            )
            rows.append(
                MirSession(
                    change_maker_id=maker,
                    status="scheduled",
                    session_date=day + timedelta(days=7),
                    team=LONG[:200],
                    start_time=time(9, n % 60),
                )
            )
        session.add_all(rows)
        ideas = [
            Idea(
                title=LONG[:120],
                problem=LONG[:2000],
                suggestion=LONG[:2000],
                service_area=LONG[:80],
                principles=[1],
                benefits=["time_saved"],
                submitter_id=maker_ids[n % len(maker_ids)],
                status=("new", "implemented")[n % 2],
                form_id=uuid.uuid4().hex,
                created_at=START + timedelta(minutes=n),
                updated_at=START,
                status_changed_at=START,
            )
            for n in range(MANY)
        ]
        session.add_all(ideas)
        await session.flush()
        rows = []
        for n, idea in enumerate(ideas):
            for maker in maker_ids[: 1 + n % 3]:
                rows.append(IdeaSupport(idea_id=idea.id or 0, person_id=maker, created_at=START))
            if idea.status == "implemented":
                rows.append(
                    IdeaEvent(
                        idea_id=idea.id or 0,
                        from_status="in_progress",
                        to_status="implemented",
                        reason=LONG[:1000],
                        at=START + timedelta(minutes=n),
                    )
                )
        session.add_all(rows)
        projects = [
            Project(
                slug=f"p-{n}-{uuid.uuid4().hex[:8]}",
                name=LONG[:200],
                workstream_id=story.workstream_id,
            )
            for n in range(MANY)
        ]
        session.add_all(projects)
        await session.flush()
        rows = []
        for n, project in enumerate(projects):
            if n % 4 == 0:
                continue  # never updated: quiet
            rows.append(
                ProjectUpdate(
                    project_id=project.id or 0,
                    month=date(2022, 5, 1),
                    text=LONG,
                    rag="green",
                    author="Sam Author",
                    source=f"test:{n}:may",
                    created_at=utc(5, 1),
                )
            )
            if n % 4 != 1:  # those stay quiet, updated only in May
                rows.append(
                    ProjectUpdate(
                        project_id=project.id or 0,
                        month=date(2022, 6, 1),
                        text=LONG,
                        rag=("red", "green")[n % 2],
                        author="Sam Author",
                        source=f"test:{n}:june",
                        created_at=START + timedelta(minutes=n),
                    )
                )
        session.add_all(rows)


async def test_thousands_of_rows_of_every_kind_make_a_small_card(
    own_database: async_sessionmaker[AsyncSession], validator: TeamsCardValidator
) -> None:
    sessions = own_database
    await _write_thousands(sessions)
    digest = await _digest(sessions, START, END)
    assert digest.held.total == MANY and digest.people_at_sessions == MANY * 500
    assert digest.coming_up.total == MANY
    assert digest.new_ideas.total == MANY
    assert digest.most_supported.total == MANY // 2
    assert digest.implemented.total == MANY // 2
    assert digest.updates.total == MANY // 2 and digest.rag_changes == MANY // 4
    assert digest.quiet_projects.total == MANY // 2
    assert digest.totals.change_makers == 200 and digest.totals.sessions_held == MANY
    for listing in (
        digest.held,
        digest.coming_up,
        digest.new_ideas,
        digest.most_supported,
        digest.implemented,
        digest.updates,
        digest.quiet_projects,
    ):
        assert len(listing.shown) == 3
    assert all(update.rag_changed for update in digest.updates.shown)

    card = render_card("digest", digest=digest)
    check_valid_small_and_plain(validator, card, wide=True, max_bytes=MAX_DIGEST_BYTES)
    texts = card_texts(card)
    for what in ("sessions", "new ideas", "supported ideas", "updates", "projects"):
        assert any(text.endswith(f"more {what} not shown here.") for text in texts), what
    assert f"…and {MANY - 3} more new ideas not shown here." in texts
