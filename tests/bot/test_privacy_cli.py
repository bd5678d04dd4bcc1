"""`ourcambridge privacy export|erase` and `ourcambridge audit list`, run as processes the way
the data protection officer's administrator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from storage import migrate
from storage.db import create_engine, session_factory, transaction
from storage.seed import seed_programme
from tests.support.personal_data import Seeded, seed_person_everywhere, traces


def _run(
    *args: str, url: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**clean, "MicrosoftAppId": "", "DATABASE_URL": url},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _seed(url: str) -> Seeded:
    # Migrated and seeded in this process: `db upgrade` and `seed` have tests of their own.
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        await seed_programme(session_factory(engine))
        return await seed_person_everywhere(session_factory(engine))
    finally:
        await engine.dispose()


async def _traces(url: str, values: tuple[str, ...]) -> list[str]:
    engine = create_engine(url)
    try:
        return await traces(engine, values)
    finally:
        await engine.dispose()


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, Seeded]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'privacy.db'}"
    return url, asyncio.run(_seed(url))


def test_export_writes_everything_held_as_json_anonymous_ideas_marked(
    database: tuple[str, Seeded], tmp_path: Path
) -> None:
    url, seeded = database
    result = _run("privacy", "export", "--email", seeded.email.upper(), url=url)
    assert result.returncode == 0, result.stderr
    export = json.loads(result.stdout)
    assert export["person"]["email"] == seeded.email
    assert export["person"]["name"] == seeded.name  # written as it is, not escaped
    anonymity = {idea["id"]: idea["anonymous"] for idea in export["ideas"]}
    assert anonymity == {seeded.idea_id: False, seeded.anonymous_idea_id: True}
    for section in (
        "roles",
        "mir_sessions",
        "mir_actions",
        "supports",
        "idea_events",
        "project_updates",
        "conversation_references",
        "dialog_state",
        "outbox_messages",
    ):
        assert export[section], f"{section} is empty"
    # Names and addresses go to the file or the screen, never to the log.
    assert seeded.email not in result.stderr and seeded.name not in result.stderr

    output = tmp_path / "export.json"
    to_file = _run("privacy", "export", "--email", seeded.email, "--output", str(output), url=url)
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout.strip() == str(output)
    assert json.loads(output.read_text(encoding="utf-8"))["ideas"] == export["ideas"]

    missing = _run("privacy", "export", "--email", "nobody@cambridge.gov.uk", url=url)
    assert missing.returncode == 1
    assert "no one with the email 'nobody@cambridge.gov.uk' is held" in missing.stderr
    assert missing.stdout == ""


def test_erase_without_yes_and_without_a_terminal_refuses_and_changes_nothing(
    database: tuple[str, Seeded],
) -> None:
    url, seeded = database
    result = _run("privacy", "erase", "--email", seeded.email, url=url)
    assert result.returncode == 2
    assert "confirm in a terminal, or run again with --yes" in result.stderr
    assert "Would erase:" in result.stdout and "ideas kept without submitter: 2" in result.stdout
    still = _run("privacy", "export", "--email", seeded.email, url=url)
    assert still.returncode == 0
    assert json.loads(still.stdout)["person"]["id"] == seeded.person_id


def test_erase_asks_on_a_terminal_and_only_yes_erases(database: tuple[str, Seeded]) -> None:
    url, seeded = database
    for answer, status in ((b"no\n", 1), (b"yes\n", 0)):
        leader, follower = pty.openpty()
        try:
            os.write(leader, answer)
            result = _run("privacy", "erase", "--email", seeded.email, url=url, stdin=follower)
        finally:
            os.close(leader)
            os.close(follower)
        assert result.returncode == status, result.stderr
        assert "Erase this person? Type yes to go on:" in result.stdout
    assert "Erased:" in result.stdout
    assert asyncio.run(_traces(url, seeded.identifying)) == []


def test_erase_leaves_no_trace_keeps_ideas_is_audited_and_a_second_run_is_a_no_op(
    database: tuple[str, Seeded],
) -> None:
    url, seeded = database
    assert asyncio.run(_traces(url, seeded.identifying))

    erased = _run("privacy", "erase", "--email", seeded.email, "--yes", url=url)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.startswith(f"Erased:\nperson:{seeded.person_id}\n")
    assert "held sessions kept without notes: 1" in erased.stdout
    assert asyncio.run(_traces(url, seeded.identifying)) == []
    assert asyncio.run(_kept(url, seeded)) == (2, 8, 4, "post, scanning")

    again = _run("privacy", "erase", "--email", seeded.email, "--yes", url=url)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "Nothing is held about that email: nothing to erase.\n"
    unconfirmed = _run("privacy", "erase", "--email", seeded.email, url=url)
    assert unconfirmed.returncode == 0  # nothing to confirm
    gone = _run("privacy", "export", "--email", seeded.email, url=url)
    assert gone.returncode == 1

    listed = _run("audit", "list", "--action", "privacy.erase", "--format", "json", url=url)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["subject"] == f"person:{seeded.person_id}" and entry["actor"] == "cli"
    assert entry["detail"]["ideas_kept_without_submitter"] == 2
    assert seeded.email not in listed.stdout and seeded.name not in listed.stdout


async def _kept(url: str, seeded: Seeded) -> tuple[int, int | None, int | None, str | None]:
    from sqlmodel import col, func, select

    from storage.models import Idea, MirSession

    engine = create_engine(url)
    try:
        async with transaction(session_factory(engine)) as session:
            ideas_kept = (
                await session.exec(
                    select(func.count())
                    .select_from(Idea)
                    .where(col(Idea.id).in_([seeded.idea_id, seeded.anonymous_idea_id]))
                )
            ).one()
            held = await session.get(MirSession, seeded.held_session_id)
            assert held is not None
            return ideas_kept, held.attendees, held.rating, held.themes
    finally:
        await engine.dispose()


def test_audit_list_shows_status_changes_and_the_erasure(database: tuple[str, Seeded]) -> None:
    url, seeded = database
    assert _run("privacy", "erase", "--email", seeded.email, "--yes", url=url).returncode == 0

    listed = _run("audit", "list", url=url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    # Newest first: the erasure, then what the seeding did, each with who and to what.
    assert "privacy.erase" in lines[0] and "cli" in lines[0]
    assert f"person:{seeded.person_id}" in lines[0]
    status_change = next(line for line in lines if " idea.status " in line)
    assert f"person:{seeded.person_id}" in status_change
    assert f"idea:{seeded.colleague_idea_id}" in status_change
    assert "from=new to=under_review" in status_change
    assert any("mir_session.status" in line for line in lines)
    assert any("digest.subscribe" in line for line in lines)
    assert any("project.update" in line for line in lines)
    assert seeded.name not in listed.stdout and seeded.email not in listed.stdout

    family = _run("audit", "list", "--action", "idea.", "--limit", "5", url=url)
    assert family.returncode == 0
    assert family.stdout.splitlines() and all(
        " idea.status " in line for line in family.stdout.splitlines()
    )
    one = _run("audit", "list", "--limit", "1", "--format", "json", url=url)
    assert [e["action"] for e in json.loads(one.stdout)] == ["privacy.erase"]
    future = _run("audit", "list", "--since", "2999-01-01", url=url)
    assert future.returncode == 0 and future.stdout == "No audit entries.\n"
    zero = _run("audit", "list", "--limit", "0", url=url)
    assert zero.returncode == 2 and "--limit must be at least 1" in zero.stderr
