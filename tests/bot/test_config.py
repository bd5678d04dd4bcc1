"""Database URLs as people paste them work with the asyncio drivers the bot uses."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from bot.config import async_database_url
from storage.db import create_engine
from tests.conftest import POSTGRES_URL


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:///ourcambridge.db", "sqlite+aiosqlite:///ourcambridge.db"),
        ("postgresql://u:p@db:5432/oc", "postgresql+asyncpg://u:p@db:5432/oc"),
        ("postgres://u@db/oc?sslmode=require", "postgresql+asyncpg://u@db/oc?ssl=require"),
        (
            "postgresql+asyncpg://u@db/oc?application_name=x&sslmode=verify-full",
            "postgresql+asyncpg://u@db/oc?application_name=x&ssl=verify-full",
        ),
        ("postgresql+asyncpg://u@db/oc?ssl=require", "postgresql+asyncpg://u@db/oc?ssl=require"),
    ],
)
def test_urls_are_mapped_onto_the_asyncio_drivers(given: str, used: str) -> None:
    assert async_database_url(given) == used


@pytest.mark.skipif(not POSTGRES_URL, reason="needs TEST_DATABASE_URL (PostgreSQL)")
async def test_libpq_sslmode_connects_through_asyncpg() -> None:
    # Azure's portal gives libpq's form; asyncpg alone would refuse the keyword.
    url = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://") + "?sslmode=disable"
    engine = create_engine(async_database_url(url))
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
