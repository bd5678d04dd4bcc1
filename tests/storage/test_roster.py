"""The roster file: every bad row reported with its line, nothing half-imported, and importing
again updates people by email without ever duplicating them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import roster
from storage.db import create_engine, session_factory, transaction
from storage.models import Person
from storage.roster import RosterError, RosterInvalid, RosterReport, RosterRow

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "roster-example.csv"
HEADER = "name,email,role,leader_email,service_area"


def _emails(count: int) -> list[str]:
    """Addresses no other test uses."""
    unique = uuid.uuid4().hex[:10]
    return [f"person{n}.{unique}@cambridge.gov.uk" for n in range(count)]


def _csv(*lines: str) -> str:
    return "\n".join((HEADER, *lines)) + "\n"


def _messages(errors: list[RosterError]) -> list[str]:
    return [str(error) for error in errors]


async def _import(sessions: async_sessionmaker[AsyncSession], text: str) -> RosterReport:
    rows, errors = roster.parse_roster(text)
    assert errors == []
    async with transaction(sessions) as session:
        return await roster.import_roster(session, rows)


async def _people(sessions: async_sessionmaker[AsyncSession], emails: list[str]) -> list[Person]:
    async with sessions() as session:
        found = await session.exec(
            select(Person).where(col(Person.email).in_(emails)).order_by(col(Person.email))
        )
        return list(found)


async def _count_people(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).select_from(Person))).one()


# --- the file, without a database ----------------------------------------------------------


def test_the_example_file_is_a_good_roster() -> None:
    rows, errors = roster.read_roster(EXAMPLE)
    assert errors == []
    assert [(row.line, row.role) for row in rows] == [
        (2, "admin"),
        (3, "change_leader"),
        (4, "change_maker"),
        (5, "change_maker"),
    ]
    maker = rows[2]
    assert maker.leader_email == rows[1].email and maker.leader_line == 3
    assert rows[0].leader_email is None and rows[0].service_area == "Transformation"


def test_columns_are_matched_by_name_in_any_case_and_order_with_or_without_a_bom() -> None:
    text = (
        "\ufeffRole, Service Area ,EMAIL,Leader email,Name\r\n"
        "Change_Leader,Planning,LENA@Cambridge.gov.uk,,Lena Okafor\r\n"
        "change_maker,,Tom@cambridge.gov.uk,lena@CAMBRIDGE.gov.uk,  Tom Hughes  \r\n"
    )
    rows, errors = roster.parse_roster(text)
    assert errors == []
    assert rows == [
        RosterRow(
            line=2,
            name="Lena Okafor",
            email="lena@cambridge.gov.uk",
            role="change_leader",
            service_area="Planning",
        ),
        RosterRow(
            line=3,
            name="Tom Hughes",
            email="tom@cambridge.gov.uk",
            role="change_maker",
            leader_email="lena@cambridge.gov.uk",
            leader_line=2,
        ),
    ]


def test_a_header_with_unknown_or_missing_columns_is_refused() -> None:
    _, errors = roster.parse_roster("name,email,role,phone,leader_email\nA,a@b.uk,admin,1,\n")
    assert _messages(errors) == [
        "line 1: unknown column 'phone' (the columns are name, email, role, leader_email, "
        "service_area)",
        "line 1: missing column service_area",
    ]
    _, errors = roster.parse_roster("name,email,Email\n")
    assert _messages(errors) == [
        "line 1: column email appears twice",
        "line 1: missing columns role, leader_email, service_area",
    ]


@pytest.mark.parametrize("text", ["", "\ufeff", "\n\n"])
def test_an_empty_file_is_refused(text: str) -> None:
    rows, errors = roster.parse_roster(text)
    assert rows == []
    assert len(errors) == 1 and errors[0].line == 1
    assert "name, email, role, leader_email, service_area" in errors[0].message


def test_a_header_alone_is_an_empty_roster() -> None:
    assert roster.parse_roster(HEADER + "\n") == ([], [])


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    long_name = "N" * 201
    long_email = "a" * 310 + "@cambridge.gov.uk"
    text = _csv(
        "Lena Okafor,lena@cambridge.gov.uk,change_leader,,Customer Services",  # 2: good
        ",nameless@cambridge.gov.uk,admin,,",  # 3
        "Tom Hughes,not-an-email,change_maker,lena@cambridge.gov.uk,",  # 4
        "Mei Chen,mei@cambridge.gov.uk,volunteer,,",  # 5
        "Sam Lee,sam@cambridge.gov.uk,change_maker,,",  # 6: a maker with no leader
        "Ann Bell,ann@cambridge.gov.uk,change_maker,ann@cambridge.gov.uk,",  # 7
        "Bob Ray,bob@cambridge.gov.uk,change_maker,tom hughes,",  # 8
        f"{long_name},long@cambridge.gov.uk,admin,,",  # 9
        f"Li Wu,{long_email},admin,,",  # 10
        f"Jo Kay,jo@cambridge.gov.uk,admin,,{'S' * 201}",  # 11
        "Cy Dee,cy@cambridge.gov.uk,admin,,,extra",  # 12
        "",  # 13: blank lines are skipped, and still counted
        "Di Fox,LENA@cambridge.gov.uk,admin,,",  # 14: lena again
        "Ed Ng,ed@cambridge.gov.uk,change_maker,mei@cambridge.gov.uk,",  # 15: mei's role is bad
        "Flo Orr,flo@cambridge.gov.uk,change_maker,jo@cambridge.gov.uk,",  # 16: jo is an admin
        "Gus Pi,gus@cambridge.gov.uk,change_leader,,",  # 17: good
    )
    rows, errors = roster.parse_roster(text)
    assert _messages(errors) == [
        "line 2: email is also on line 14",
        "line 3: name is empty",
        "line 4: email does not look like an email address (name@cambridge.gov.uk)",
        "line 5: role must be change_maker, change_leader or admin",
        "line 6: leader_email is empty: a change_maker needs their Change Leader's email",
        "line 7: leader_email is the person's own email",
        "line 8: leader_email does not look like an email address (name@cambridge.gov.uk)",
        "line 9: name is longer than 200 characters",
        "line 10: email is longer than 320 characters",
        "line 11: service_area is longer than 200 characters",
        "line 12: has 6 cells but the header names 5 columns",
        "line 14: email is also on line 2",
        "line 16: leader_email names the person on line 11, whose role is admin, not change_leader",
    ]
    # Line 15's leader (line 5) is reported on their own line; only good rows come back.
    assert [row.line for row in rows] == [15, 17]


def test_a_quoted_cell_over_two_lines_keeps_the_line_numbers_right() -> None:
    text = _csv(
        '"Lena\nOkafor",lena@cambridge.gov.uk,change_leader,,',  # lines 2-3
        "Tom Hughes,tom@cambridge.gov.uk,change_maker,nobody,",  # line 4
    )
    _, errors = roster.parse_roster(text)
    assert _messages(errors) == [
        "line 2: name must be one line of text",
        "line 4: leader_email does not look like an email address (name@cambridge.gov.uk)",
    ]


def test_a_file_that_is_not_utf8_or_not_there_is_unreadable(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(_csv("Zoë Hart,zoe@cambridge.gov.uk,admin,,").encode("latin-1"))
    with pytest.raises(roster.RosterUnreadable, match=r"not UTF-8 text \(line 2\)"):
        roster.read_roster(latin1)
    with pytest.raises(roster.RosterUnreadable, match="cannot read"):
        roster.read_roster(tmp_path / "missing.csv")


# --- importing ---------------------------------------------------------------------------


async def test_importing_again_updates_and_never_duplicates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leader, maker_a, maker_b = _emails(3)
    first = _csv(
        f"Lena Okafor,{leader},change_leader,,Customer Services",
        f"Tom Hughes,{maker_a},change_maker,{leader},Customer Services",
        f"Mei Chen,{maker_b},change_maker,{leader},Revenues",
    )
    report = await _import(sessions, first)
    assert (report.created, report.updated, report.unchanged) == (3, 0, 0)

    again = await _import(sessions, first)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)

    # Mei moves service area and becomes a leader; the addresses' case does not matter.
    changed = _csv(
        f"Lena Okafor,{leader.upper()},change_leader,,Customer Services",
        f"Tom Hughes,{maker_a},change_maker,{leader.upper()},Customer Services",
        f"Mei Chen,{maker_b.title()},change_leader,,Planning",
    )
    third = await _import(sessions, changed)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 2)

    people = {p.email: p for p in await _people(sessions, [leader, maker_a, maker_b])}
    assert len(people) == 3
    lena, tom, mei = people[leader], people[maker_a], people[maker_b]
    assert lena.roles == ["change_leader"] and lena.in_roster and lena.leader_id is None
    assert tom.roles == ["change_maker"] and tom.leader_id == lena.id
    assert tom.service_area == "Customer Services" and tom.name == "Tom Hughes"
    assert mei.roles == ["change_leader"] and mei.leader_id is None
    assert mei.service_area == "Planning"


async def test_a_leader_already_in_the_roster_may_be_named_without_being_in_the_file(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leader, maker, admin = _emails(3)
    await _import(sessions, _csv(f"Lena Okafor,{leader},change_leader,,"))
    await _import(sessions, _csv(f"Tom Hughes,{maker},change_maker,{leader},"))
    lena, tom = await _people(sessions, [leader, maker])
    assert tom.leader_id == lena.id

    # An admin of the roster is not a leader.
    await _import(sessions, _csv(f"Asha Patel,{admin},admin,,"))
    rows, errors = roster.parse_roster(_csv(f"Tom Hughes,{maker},change_maker,{admin},"))
    assert errors == []
    with pytest.raises(RosterInvalid) as raised:
        async with transaction(sessions) as session:
            await roster.import_roster(session, rows)
    assert _messages(raised.value.errors) == [
        "line 2: leader_email names nobody who is a change_leader in this file or already "
        "in the roster"
    ]


async def test_one_bad_row_and_nothing_is_imported(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    leader, maker, unknown, other = _emails(4)
    text = _csv(
        f"Lena Okafor,{leader},change_leader,,",
        f"Tom Hughes,{maker},change_maker,{unknown},",  # a leader nobody knows
        f"Mei Chen,{other},volunteer,,",  # a bad role
    )
    before = await _count_people(sessions)
    rows, errors = roster.parse_roster(text)
    assert _messages(errors) == ["line 4: role must be change_maker, change_leader or admin"]
    # What the file says and what the database says are reported together.
    with pytest.raises(RosterInvalid) as raised:
        async with transaction(sessions) as session:
            await roster.import_roster(session, rows, file_errors=errors)
    assert _messages(raised.value.errors) == [
        "line 3: leader_email names nobody who is a change_leader in this file or already "
        "in the roster",
        "line 4: role must be change_maker, change_leader or admin",
    ]
    assert await _count_people(sessions) == before
    assert await _people(sessions, [leader, maker, other]) == []


async def test_a_person_known_from_teams_becomes_their_roster_entry(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (email,) = _emails(1)
    aad = f"aad-{uuid.uuid4().hex}"
    async with transaction(sessions) as session:
        staff = Person(aad_object_id=aad, teams_id=f"29:{aad}", name="Tom (Teams)", email=email)
        session.add(staff)
    report = await _import(sessions, _csv(f"Tom Hughes,{email.upper()},change_leader,,Planning"))
    assert (report.created, report.updated) == (0, 1)
    (tom,) = await _people(sessions, [email])
    assert tom.id == staff.id and tom.in_roster and tom.roles == ["change_leader"]
    assert (tom.aad_object_id, tom.teams_id, tom.name) == (aad, f"29:{aad}", "Tom Hughes")


async def test_people_not_in_the_file_are_left_as_they_were(fresh_database_url: str) -> None:
    engine = create_engine(fresh_database_url)
    sessions = session_factory(engine)
    try:
        leader, maker, admin = _emails(3)
        first = await _import(
            sessions,
            _csv(
                f"Lena Okafor,{leader},change_leader,,",
                f"Tom Hughes,{maker},change_maker,{leader},",
            ),
        )
        assert first.summary() == (
            "Roster imported: 2 created, 0 updated, 0 unchanged; 0 in the roster but not in "
            "the file (left unchanged)"
        )
        second = await _import(sessions, _csv(f"Asha Patel,{admin},admin,,"))
        assert (second.created, second.not_in_file) == (1, 2)
        lena, tom = await _people(sessions, [leader, maker])
        assert lena.in_roster and tom.in_roster and tom.leader_id == lena.id
    finally:
        await engine.dispose()
