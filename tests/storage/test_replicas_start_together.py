"""Replicas deployed together each run `db upgrade` and `seed` on the one PostgreSQL
database: advisory locks make the second wait, so neither fails and nothing is doubled."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from bot.config import async_database_url
from storage.db import create_engine, session_factory
from storage.models import Project, ProjectUpdate, Workstream
from storage.seed import read_programme, seed_programme
from tests.conftest import POSTGRES_URL

REPLICAS = 4
DATABASE = "ourcambridge_replicas_test"


@pytest.fixture
async def fresh_postgres() -> AsyncIterator[str]:
    if not POSTGRES_URL:
        pytest.skip("TEST_DATABASE_URL is not set: replicas share a PostgreSQL server")
    server = make_url(async_database_url(POSTGRES_URL))
    admin = create_engine(server.render_as_string(hide_password=False))
    admin = admin.execution_options(isolation_level="AUTOCOMMIT")

    async def recreate(create: bool) -> None:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            if create:
                await connection.execute(text(f"CREATE DATABASE {DATABASE}"))

    await recreate(True)
    try:
        yield server.set(database=DATABASE).render_as_string(hide_password=False)
    finally:
        await recreate(False)
        await admin.dispose()


async def test_replicas_upgrade_and_seed_at_once(fresh_postgres: str) -> None:
    # Alembic's context is global to a process, so each replica's upgrade is a process of
    # its own, as it is in a deployment.
    upgrades = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "db",
            "upgrade",
            env={**os.environ, "DATABASE_URL": fresh_postgres},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(REPLICAS)
    ]
    outputs = await asyncio.gather(*(process.communicate() for process in upgrades))
    for process, (output, _) in zip(upgrades, outputs, strict=True):
        assert process.returncode == 0, output.decode()
    engines = [create_engine(fresh_postgres) for _ in range(REPLICAS)]
    try:
        reports = await asyncio.gather(
            *(seed_programme(session_factory(engine)) for engine in engines)
        )
        created = sorted(report.created for report in reports)
        assert created[:-1] == [0] * (REPLICAS - 1), "one replica seeded, the others waited"
        assert all(r.unchanged == created[-1] for r in reports if not r.created)
        data = read_programme()
        expected = [
            len(data.workstreams),
            len(data.projects),
            sum(len(project.updates) for project in data.projects),
        ]
        async with session_factory(engines[0])() as session:
            counts = [
                (await session.exec(select(func.count()).select_from(table))).one()
                for table in (Workstream, Project, ProjectUpdate)
            ]
        assert counts == expected
    finally:
        for engine in engines:
            await engine.dispose()
