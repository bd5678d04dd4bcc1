"""The asyncio engine and sessions. Every query runs on the engine; nothing blocks the loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel.ext.asyncio.session import AsyncSession

# Errors that mean "the database cannot be reached right now" rather than "this query is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # SQLite: unable to open the file, locked; drivers: connection lost
    InterfaceError,  # the connection was closed under the driver
    PoolTimeout,  # every pooled connection busy for pool_timeout seconds
    ConnectionError,
    TimeoutError,
    OSError,
)

# PostgreSQL SQLSTATE classes and codes that mean the server cannot serve us now: connection
# exceptions (08), refused login (28), no such database (3D000), out of resources (53) and
# shutting down or starting up (57P01-57P03).
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "28", "3D000", "53", "57P01", "57P02", "57P03")


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES)


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping replaces connections that died while the database restarted, so the
    # process recovers by itself; the timeouts keep a dead server from hanging turns.
    return create_async_engine(
        url,
        echo=echo,
        # Statement parameters stay out of error messages and logs: they hold people's words.
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=5,
        connect_args={"timeout": 5, "command_timeout": 15},
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets readers carry on while one writer commits (the CLI seeding a serving bot).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose work is committed on success and rolled back on any error."""
    async with sessions() as session, session.begin():
        yield session


# Keys of the PostgreSQL advisory locks that let one replica at a time run a job that every
# replica may start (the deploy step runs `db upgrade` and `seed` on each of them).
MIGRATION_LOCK = 0x0C4B_0001
SEED_LOCK = 0x0C4B_0002
# Two roster imports at once would both create the same new people.
ROSTER_LOCK = 0x0C4B_0003
# Two erasures at once would both create the "Erased person" placeholder.
PRIVACY_LOCK = 0x0C4B_0005


async def hold_transaction_lock(session: AsyncSession, key: int) -> None:
    """Wait for the advisory lock `key`, held until the session's transaction ends.

    PostgreSQL only; SQLite is one file on one machine and serialises its writers itself.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.exec(text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=key))  # type: ignore[call-overload]


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
