"""The Making It Real roster: who is a Change Maker, a Change Leader or an admin, from a CSV file.

The programme team keeps the roster in a spreadsheet and imports it with
`ourcambridge roster import FILE.csv`. A person is keyed by their email (stored lower-cased),
so importing the file again updates people and never duplicates them, and the row of someone
who already talked to the bot (known from Teams) becomes their roster row. The whole file is
checked before anything is written: one bad row and nothing is imported, and every problem is
reported at once with the file's line number, so the file can be fixed in one go.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import audit
from storage.db import ROSTER_LOCK, hold_transaction_lock, transaction
from storage.models import ROLES, Person, utcnow

logger = logging.getLogger(__name__)

COLUMNS = ("name", "email", "role", "leader_email", "service_area")
MAX_NAME = 200
MAX_EMAIL = 320
MAX_SERVICE_AREA = 200

# Deliberately loose: the roster holds work addresses typed by people, and the point is to
# catch a name in the email column or a missing part, not to judge RFC 5322.
_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>.]+")

# Line breaks (a quoted cell may hold them) and other control characters: names and service
# areas are shown on one line of a card.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class RosterRow:
    """One person of the file, checked on its own: email and leader_email lower-cased,
    empty optional cells as None."""

    line: int
    name: str
    email: str
    role: str
    leader_email: str | None = None
    service_area: str | None = None
    # The file's line of the leader's own row, when the leader is in the file (even on a bad
    # line); None when they must already be in the roster in the database.
    leader_line: int | None = None


@dataclass(frozen=True)
class RosterError:
    """What is wrong with one line of the file (line 1 is the header)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class RosterInvalid(Exception):
    """The file has bad rows; nothing was imported."""

    def __init__(self, errors: Sequence[RosterError]):
        self.errors = by_line(errors)
        super().__init__("\n".join(str(error) for error in self.errors))


def by_line(errors: Sequence[RosterError]) -> list[RosterError]:
    """In the file's order; a line's problems in the order they were found."""
    return sorted(errors, key=lambda error: error.line)


class RosterUnreadable(Exception):
    """The file cannot be read, or is not UTF-8 text."""


@dataclass
class RosterReport:
    """How many of the file's people were created, changed or already as the file has them,
    and how many people already in the roster the file did not mention (left as they were:
    a roster file may cover one service area only)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    not_in_file: int = 0

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def summary(self) -> str:
        return (
            f"Roster imported: {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged; {self.not_in_file} in the roster but not in the "
            "file (left unchanged)"
        )


# --- reading and checking the file (no database) ---------------------------------------


def read_roster(path: Path) -> tuple[list[RosterRow], list[RosterError]]:
    """Parse the file at `path` (UTF-8, with or without the byte order mark Excel's
    "CSV UTF-8" writes). Raises RosterUnreadable if it cannot be read as such."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise RosterUnreadable(f"cannot read {path}: {error.strerror or error}") from error
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise RosterUnreadable(
            f'{path} is not UTF-8 text (line {line}); save it as "CSV UTF-8"'
        ) from error
    return parse_roster(text)


def parse_roster(text: str) -> tuple[list[RosterRow], list[RosterError]]:
    """The file's good rows and every problem found in it, by line.

    Import the rows only when there are no errors. Leaders the file names but does not
    contain are checked against the database by `import_roster`.
    """
    errors: list[RosterError] = []
    records = list(_records(text.removeprefix("\ufeff"), errors))
    if not records:
        if not errors:
            errors.append(
                RosterError(
                    1, f"the file is empty; its first line must name the columns {_listed()}"
                )
            )
        return [], errors
    header_line, header = records[0]
    positions, header_problems = _header(header)
    if header_problems:
        return [], by_line(errors + [RosterError(header_line, p) for p in header_problems])

    drafts: list[RosterRow] = []
    for line, cells in records[1:]:
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and the rows of empty cells spreadsheets leave at the end
        draft, problems = _row(line, cells, positions)
        errors.extend(RosterError(line, problem) for problem in problems)
        drafts.append(draft)
    errors.extend(_cross_row_errors(drafts))

    first_line: dict[str, int] = {}
    for draft in drafts:
        first_line.setdefault(draft.email, draft.line)
    bad_lines = {error.line for error in errors}
    rows = [
        replace(draft, leader_line=first_line.get(draft.leader_email or ""))
        for draft in drafts
        if draft.line not in bad_lines
    ]
    return rows, by_line(errors)


def _records(text: str, errors: list[RosterError]) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record with the line it starts on (a quoted cell may span lines)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            errors.append(RosterError(line, f"cannot be read as CSV: {error}"))
            return
        yield line, cells


def _header(header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Where each column is, matched by name in any case and order ("Leader email" will do
    for leader_email), or what is wrong with the header."""
    positions: dict[str, int] = {}
    problems: list[str] = []
    if not any(title.strip() for title in header):
        return positions, [f"the first line must name the columns {_listed()}"]
    for position, title in enumerate(header):
        column = "_".join(title.strip().lower().replace("-", " ").split())
        if not column:
            if any(cell.strip() for cell in header[position:]):
                problems.append(f"column {position + 1} has no name")
        elif column not in COLUMNS:
            problems.append(f"unknown column {title.strip()!r} (the columns are {_listed()})")
        elif column in positions:
            problems.append(f"column {column} appears twice")
        else:
            positions[column] = position
    missing = [column for column in COLUMNS if column not in positions]
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return positions, problems


def _listed() -> str:
    return ", ".join(COLUMNS)


def _row(line: int, cells: list[str], positions: dict[str, int]) -> tuple[RosterRow, list[str]]:
    """One row's values by column (stripped; emails and role lower-cased; empty optional
    cells None) and what is wrong with it on its own."""
    width = max(positions.values()) + 1
    text = {
        column: cells[position].strip() if position < len(cells) else ""
        for column, position in positions.items()
    }
    name, email, role = text["name"], text["email"].lower(), text["role"].lower()
    leader_email, service_area = text["leader_email"].lower(), text["service_area"]

    problems: list[str] = []
    if any(cell.strip() for cell in cells[width:]):
        problems.append(f"has {len(cells)} cells but the header names {width} columns")
    if not name:
        problems.append("name is empty")
    elif len(name) > MAX_NAME:
        problems.append(f"name is longer than {MAX_NAME} characters")
    elif _CONTROL.search(name):
        problems.append("name must be one line of text")
    problems.extend(_email_problems("email", email, required=True))
    if role not in ROLES:
        problems.append("role must be change_maker, change_leader or admin")
    problems.extend(_email_problems("leader_email", leader_email, required=False))
    if role == "change_maker" and not leader_email:
        problems.append("leader_email is empty: a change_maker needs their Change Leader's email")
    if leader_email and leader_email == email:
        problems.append("leader_email is the person's own email")
    if len(service_area) > MAX_SERVICE_AREA:
        problems.append(f"service_area is longer than {MAX_SERVICE_AREA} characters")
    elif _CONTROL.search(service_area):
        problems.append("service_area must be one line of text")
    row = RosterRow(
        line=line,
        name=name,
        email=email,
        role=role,
        leader_email=leader_email or None,
        service_area=service_area or None,
    )
    return row, problems


def _email_problems(column: str, email: str, *, required: bool) -> list[str]:
    if not email:
        return [f"{column} is empty"] if required else []
    if len(email) > MAX_EMAIL:
        return [f"{column} is longer than {MAX_EMAIL} characters"]
    if not _EMAIL.fullmatch(email):
        return [f"{column} does not look like an email address (name@cambridge.gov.uk)"]
    return []


def _cross_row_errors(rows: Sequence[RosterRow]) -> list[RosterError]:
    """An email on two lines (both reported), and a leader in the file who is not a
    change_leader there."""
    lines_of: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        if row.email:
            lines_of[row.email].append(row.line)
    role_of = {row.email: row.role for row in reversed(rows)}
    errors: list[RosterError] = []
    for row in rows:
        others = [str(line) for line in lines_of.get(row.email, ()) if line != row.line]
        if others:
            errors.append(RosterError(row.line, f"email is also on line {', '.join(others)}"))
        leader_role = role_of.get(row.leader_email or "")
        if (
            row.leader_email != row.email
            and leader_role in ROLES
            and leader_role != "change_leader"
        ):
            line = lines_of[row.leader_email or ""][0]
            errors.append(
                RosterError(
                    row.line,
                    f"leader_email names the person on line {line}, whose role is "
                    f"{leader_role}, not change_leader",
                )
            )
    return errors


# --- importing (database) -----------------------------------------------------------------


async def import_roster_file(
    sessions: async_sessionmaker[AsyncSession], path: Path
) -> RosterReport:
    """Check and import the file at `path` in one transaction, as `roster import` does.

    Raises RosterUnreadable or RosterInvalid (with every problem); either way nothing is
    written.
    """
    rows, errors = read_roster(path)
    async with transaction(sessions) as session:
        report = await import_roster(session, rows, file_errors=errors)
    logger.info("%s", report.summary())
    return report


async def import_roster(
    session: AsyncSession,
    rows: Sequence[RosterRow],
    *,
    file_errors: Sequence[RosterError] = (),
) -> RosterReport:
    """Create or update each row's person by email, and link them to their leader.

    Leaders who are not in the file must already be change leaders in the roster. Every
    problem (those already found in the file, passed as `file_errors`, and those found
    against the database) is raised together as RosterInvalid before anything is written.
    A person already known from Teams keeps their Teams identity; people of the roster the
    file does not mention are left as they are.
    """
    # Two imports at once would both insert the same new people; the second waits.
    await hold_transaction_lock(session, ROSTER_LOCK)
    in_file = {row.email: row for row in rows}
    outside = {
        row.leader_email for row in rows if row.leader_email and row.leader_email not in in_file
    }
    known: dict[str, Person] = {
        person.email: person
        for person in await session.exec(
            select(Person).where(col(Person.email).in_(sorted(in_file.keys() | outside)))
        )
        if person.email
    }
    errors = [
        *file_errors,
        *_cross_row_errors(rows),
        *_leader_errors(rows, in_file, known, file_errors),
    ]
    if errors:
        raise RosterInvalid(errors)

    report = RosterReport()
    now = utcnow()
    outcomes: list[tuple[RosterRow, Person, Outcome]] = []
    for row in rows:
        fields: dict[str, Any] = {
            "name": row.name,
            "roles": [row.role],
            "service_area": row.service_area,
            "in_roster": True,
        }
        person = known.get(row.email)
        if person is None:
            person = Person(email=row.email, **fields)
            session.add(person)
            known[row.email] = person
            outcomes.append((row, person, "created"))
        else:
            outcomes.append((row, person, "updated" if _apply(person, fields) else "unchanged"))
    await session.flush()  # the new people's ids, to link Change Makers to new leaders

    for row, person, outcome in outcomes:
        leader = known[row.leader_email] if row.leader_email else None
        if _apply(person, {"leader_id": leader.id if leader else None}) and outcome == "unchanged":
            outcome = "updated"
        if outcome == "updated":
            person.updated_at = now
        report.count(outcome)
    await session.flush()

    report.not_in_file = (
        await session.exec(
            select(func.count())
            .select_from(Person)
            .where(col(Person.in_roster), col(Person.email).not_in(sorted(in_file)))
        )
    ).one()
    await audit.record(
        session,
        action="roster.import",
        actor_id=None,
        actor="cli",
        detail={
            "rows": len(rows),
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "not_in_file": report.not_in_file,
        },
        at=now,
    )
    return report


def _leader_errors(
    rows: Sequence[RosterRow],
    in_file: dict[str, RosterRow],
    known: dict[str, Person],
    file_errors: Sequence[RosterError],
) -> list[RosterError]:
    """Each leader_email must name a change_leader of this file or of the roster already."""
    bad_lines = {error.line for error in file_errors}
    errors: list[RosterError] = []
    for row in rows:
        if not row.leader_email or row.leader_email in in_file:
            continue  # no leader, or one in the file: checked with the file
        if row.leader_line is not None:
            if row.leader_line not in bad_lines:
                errors.append(
                    RosterError(
                        row.line,
                        f"leader_email names the person on line "
                        f"{row.leader_line}, who is not being imported",
                    )
                )
            continue
        leader = known.get(row.leader_email)
        if leader is None or not leader.in_roster or "change_leader" not in leader.roles:
            errors.append(
                RosterError(
                    row.line,
                    "leader_email names nobody who is a change_leader in this file or "
                    "already in the roster",
                )
            )
    return errors


def _apply(person: Person, fields: dict[str, Any]) -> bool:
    """Set the fields that differ; True if any did."""
    changed = False
    for key, value in fields.items():
        if getattr(person, key) != value:
            setattr(person, key, value)
            changed = True
    return changed
