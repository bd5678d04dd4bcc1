"""The `ourcambridge` command line, run as a process the way a deploy step runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

EXAMPLE_ROSTER = Path(__file__).resolve().parents[2] / "docs" / "roster-example.csv"


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


def test_help_explains_every_verb() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for verb in ("serve", "db", "seed", "roster"):
        assert verb in result.stdout
    db_help = _run("db", "--help")
    assert "upgrade" in db_help.stdout and "schema" in db_help.stdout
    serve_help = _run("serve", "--help")
    assert "--host" in serve_help.stdout and "--port" in serve_help.stdout


def test_upgrade_then_seed_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    first = _run("seed", DATABASE_URL=url)
    second = _run("seed", DATABASE_URL=url)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "0 rows created, 0 updated" not in first.stderr
    assert "0 rows created, 0 updated" in second.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_serve_refuses_the_network_without_authentication(host: str) -> None:
    result = _run("serve", "--host", host, "--port", "1")
    assert result.returncode == 2
    assert "authentication OFF" in result.stderr


def test_a_configuration_error_is_reported_plainly() -> None:
    result = _run("seed", TIMEZONE="Europe/Cambridge")
    assert result.returncode == 2
    assert "configuration error" in result.stderr


def test_roster_import_reports_what_it_did_and_reimporting_changes_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roster.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    first = _run("roster", "import", str(EXAMPLE_ROSTER), DATABASE_URL=url)
    assert first.returncode == 0, first.stderr
    assert "Roster imported: 4 created, 0 updated, 0 unchanged" in first.stderr
    second = _run("roster", "import", str(EXAMPLE_ROSTER), DATABASE_URL=url)
    assert second.returncode == 0, second.stderr
    assert "Roster imported: 0 created, 0 updated, 4 unchanged" in second.stderr
    # Names and addresses stay out of the log.
    assert "cambridge.gov.uk" not in first.stderr + second.stderr

    # One more person, whose leader is already in the roster; the others are left alone.
    extra = tmp_path / "extra.csv"
    extra.write_text(
        "\ufeffName,Email,Role,Leader_Email,Service_Area\r\n"
        "Ravi Shah,ravi.shah@cambridge.gov.uk,change_maker,LENA.OKAFOR@cambridge.gov.uk,"
        "Planning\r\n",
        encoding="utf-8",
    )
    third = _run("roster", "import", str(extra), DATABASE_URL=url)
    assert third.returncode == 0, third.stderr
    summary = "Roster imported: 1 created, 0 updated, 0 unchanged; 4 in the roster but not in"
    assert summary in third.stderr


def test_roster_import_of_bad_rows_lists_them_all_and_imports_nothing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roster.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "name,email,role,leader_email,service_area\n"
        "Lena Okafor,lena.okafor@cambridge.gov.uk,change_leader,,\n"
        "Tom Hughes,tom.hughes@cambridge.gov.uk,changemaker,lena.okafor@cambridge.gov.uk,\n"
        "Mei Chen,mei.chen@cambridge.gov.uk,change_maker,,\n"
        "Sam Lee,sam.lee@cambridge.gov.uk,change_maker,nobody@cambridge.gov.uk,\n",
        encoding="utf-8",
    )
    result = _run("roster", "import", str(bad), DATABASE_URL=url)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "line 3: role must be change_maker, change_leader or admin",
        "line 4: leader_email is empty: a change_maker needs their Change Leader's email",
        "line 5: leader_email names nobody who is a change_leader in this file or already in "
        "the roster",
        f"ourcambridge: {bad}: 3 problems; nothing was imported",
    ]
    # Nothing was written: the good row alone now imports as new.
    good = tmp_path / "good.csv"
    good.write_text(
        "name,email,role,leader_email,service_area\n"
        "Lena Okafor,lena.okafor@cambridge.gov.uk,change_leader,,\n",
        encoding="utf-8",
    )
    after = _run("roster", "import", str(good), DATABASE_URL=url)
    assert "Roster imported: 1 created, 0 updated, 0 unchanged; 0 in the roster" in after.stderr


def test_roster_import_of_an_unreadable_file_exits_2(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roster.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    missing = _run("roster", "import", str(tmp_path / "missing.csv"), DATABASE_URL=url)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        "name,email,role,leader_email,service_area\nZoë,z@x.uk,admin,,\n".encode("latin-1")
    )
    result = _run("roster", "import", str(latin1), DATABASE_URL=url)
    assert result.returncode == 2
    assert 'is not UTF-8 text (line 2); save it as "CSV UTF-8"' in result.stderr


def test_digest_preview_prints_the_card_of_an_iso_week(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'digest.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    assert _run("seed", DATABASE_URL=url).returncode == 0
    result = _run("digest", "preview", "--print", "--week", "2022-W24", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert "Mon 13 June 2022 to Sun 19 June 2022" in result.stdout
    bad = _run("digest", "preview", "--print", "--week", "2022-24", DATABASE_URL=url)
    assert bad.returncode == 2 and "not an ISO week" in bad.stderr


def test_outbox_status_tells_pending_sent_and_failed_with_the_reasons(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
    assert _run("db", "upgrade", DATABASE_URL=url).returncode == 0
    asyncio.run(_outbox_rows(url))
    result = _run("outbox", "status", DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["pending", "2"] and "(1 waiting to be retried)" in lines[0]
    assert lines[2].split() == ["sent", "1"]
    assert lines[3].split() == ["failed", "1"]
    assert "may have been sent twice: 0" in result.stdout
    assert "test:gone" in result.stdout and "HTTP 403" in result.stdout
    queued = _run("digest", "send", "--now", DATABASE_URL=url)
    assert queued.returncode == 0 and "0 digest(s) queued" in queued.stdout


async def _outbox_rows(url: str) -> None:
    """Four messages: new, waiting for a retry, sent and failed (as a worker leaves them)."""
    from storage import outbox
    from storage.db import create_engine, session_factory, transaction
    from storage.models import utcnow

    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        for key in ("test:new", "test:retry", "test:sent", "test:gone"):
            async with transaction(sessions) as session:
                await outbox.enqueue(
                    session, dedupe_key=key, conversation_id="a:1", payload={}, now=utcnow()
                )
        async with transaction(sessions) as session:
            claimed = {
                d.dedupe_key: d
                for d in await outbox.claim_due(
                    session, now=utcnow(), limit=10, lease=timedelta(minutes=5)
                )
            }
        async with transaction(sessions) as session:
            await outbox.release(session, delivery=claimed["test:new"], at=utcnow())
            await outbox.mark_failed(
                session,
                delivery=claimed["test:retry"],
                error="HTTP 429",
                retry_at=utcnow() + timedelta(minutes=1),
            )
            await outbox.mark_sent(session, delivery=claimed["test:sent"], now=utcnow())
            await outbox.mark_failed(
                session, delivery=claimed["test:gone"], error="HTTP 403", retry_at=None
            )
    finally:
        await engine.dispose()
