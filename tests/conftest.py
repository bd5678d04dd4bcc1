"""Shared fixtures: a migrated, seeded database per backend.

Every database-backed test runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL
too: the `database_url` fixture is parametrised over the backends and the tests that need a
database take it (directly or through `sessions`).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.config import async_database_url
from storage import migrate
from storage.db import create_engine, session_factory
from storage.seed import seed_programme
from tests.support.log_scan import LogScan

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def pytest_configure(config: pytest.Config) -> None:
    # Logs at INFO and above must hold no personal data: every record of the run is kept and,
    # at its end, searched for every personal value the tests sent (tests/support/log_scan.py).
    config.pluginmanager.register(LogScan(), "personal-data-log-scan")


async def _reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """An empty database migrated to head and seeded with the programme's data."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "ourcambridge-test.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = async_database_url(POSTGRES_URL)
        await _reset_postgres(url)
    # Alembic's env runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        await seed_programme(session_factory(engine))
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def fresh_database(
    database_url: str, directory: Path, *, prefix: str = "fresh"
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A new database of the same backend as `database_url` (a file in `directory`, or a
    database of its own on the same PostgreSQL server), migrated and seeded; and how to drop
    it afterwards."""
    if database_url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{directory / f'{prefix}.db'}"

        async def drop() -> None:
            return None  # the file goes with pytest's temporary directory

    else:
        name = f"ourcambridge_{prefix}_{uuid.uuid4().hex[:12]}"
        server = make_url(database_url)
        admin = create_engine(server.render_as_string(hide_password=False)).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
        url = server.set(database=name).render_as_string(hide_password=False)

        async def drop() -> None:
            async with admin.connect() as connection:
                await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await admin.dispose()

    await asyncio.to_thread(migrate.upgrade, url)
    engine = create_engine(url)
    try:
        await seed_programme(session_factory(engine))
    finally:
        await engine.dispose()
    return url, drop


@pytest.fixture
async def fresh_database_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own (same backend as `database_url`), migrated and seeded, for a
    test whose figures must count only what the test itself did."""
    url, drop = await fresh_database(database_url, tmp_path)
    yield url
    await drop()


@pytest.fixture
async def fresh_sessions(
    fresh_database_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on `fresh_database_url`: for tests of what looks at every row there is
    (every subscription, every request in the rate-limit log)."""
    engine = create_engine(fresh_database_url)
    yield session_factory(engine)
    await engine.dispose()
