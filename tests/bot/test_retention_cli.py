"""`ourcambridge privacy purge [--dry-run]`, run as a process the way an operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlmodel import select

from storage import audit, retention
from storage.db import create_engine, session_factory, transaction
from storage.models import BotState, OutboxMessage, utcnow


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env={**clean, "MicrosoftAppId": "", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _old_rows(url: str) -> None:
    """A message sent 40 days ago and a form left 40 days ago: both past the defaults."""
    engine = create_engine(url)
    long_ago = utcnow() - timedelta(days=40)
    try:
        async with transaction(session_factory(engine)) as session:
            session.add(
                OutboxMessage(
                    dedupe_key="test:old",
                    conversation_id="a:1",
                    payload={"text": "Hello Sam"},
                    status="sent",
                    created_at=long_ago,
                    sent_at=long_ago,
                )
            )
            session.add(BotState(key="test:old", document="{}", etag="1", updated_at=long_ago))
    finally:
        await engine.dispose()


async def _left(url: str) -> tuple[int, int, list[audit.AuditEntryView]]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            messages = len((await session.exec(select(OutboxMessage))).all())
            states = len((await session.exec(select(BotState))).all())
            entries = await audit.list_entries(session, action=retention.AUDIT_ACTION)
    finally:
        await engine.dispose()
    return messages, states, entries


def test_privacy_purge_dry_run_reports_and_changes_nothing_then_purge_does_it(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    asyncio.run(_old_rows(url))

    dry = _run("privacy", "purge", "--dry-run", DATABASE_URL=url)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "Dry run, nothing was changed. A purge now would do this:"
    assert "      1  sent or failed outbox messages deleted" in lines
    assert "      1  idle dialog states deleted" in lines
    assert lines[-1] == "      2  in all"
    assert asyncio.run(_left(url)) == (1, 1, []), "the dry run changed something"

    done = _run("privacy", "purge", DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "Purged:"
    assert done.stdout.splitlines()[1:] == lines[1:], "the dry run said what the purge did"
    messages, states, entries = asyncio.run(_left(url))
    assert (messages, states) == (0, 0)
    assert [
        (entry.actor, entry.detail["outbox"], entry.detail["bot_state"]) for entry in entries
    ] == [("cli", 1, 1)]
    assert "Hello Sam" not in done.stdout + done.stderr


def test_privacy_purge_is_explained_in_help() -> None:
    result = _run("privacy", "purge", "--help")
    assert result.returncode == 0
    assert "--dry-run" in result.stdout and "RETENTION_PURGE_AT" in result.stdout


def test_a_bad_retention_setting_is_a_configuration_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'bad.db'}"
    result = _run("privacy", "purge", "--dry-run", DATABASE_URL=url, RETENTION_OUTBOX_DAYS="3")
    assert result.returncode == 2 and "RETENTION_OUTBOX_DAYS" in result.stderr


def test_the_settings_make_the_policy_and_the_purge_time() -> None:
    from datetime import time

    from bot.config import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        retention_purge_at=" OFF ",
        retention_outbox_days=9,
        retention_dialog_state_days=2,
        retention_session_notes_months=18,
        retention_idea_people_years=3,
        retention_idle_staff_days=400,
        retention_audit_years=7,
    )
    assert settings.purge_time is None
    assert settings.retention_policy == retention.RetentionPolicy(
        outbox=timedelta(days=9),
        dialog_state=timedelta(days=2),
        session_notes_months=18,
        idea_people_years=3,
        idle_staff=timedelta(days=400),
        audit_years=7,
    )
    assert Settings(_env_file=None).purge_time == time(3, 30)  # type: ignore[call-arg]
    result = _run("privacy", "purge", "--dry-run", RETENTION_PURGE_AT="half past three")
    assert result.returncode == 2 and "RETENTION_PURGE_AT" in result.stderr
