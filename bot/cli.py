"""`ourcambridge`: the one command line of the bot."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from bot.config import Settings

logger = logging.getLogger("ourcambridge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ourcambridge",
        description=(
            "The Our Cambridge Teams bot. Configuration comes from the environment and an "
            "optional .env file in the working directory (see .env.example)."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve the bot over HTTP (POST /api/messages, GET /healthz, GET /readyz)",
        description="Serve the bot. The database must be migrated first (ourcambridge db upgrade).",
    )
    serve.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: PORT or 3978)")

    db = commands.add_parser("db", help="manage the database schema (Alembic migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    db_commands.add_parser(
        "upgrade",
        help="migrate DATABASE_URL to the latest schema (safe to run on every deploy)",
        description="Apply every Alembic migration not yet applied to DATABASE_URL.",
    )

    commands.add_parser(
        "seed",
        help="load the programme's workstreams, projects, updates and principles (idempotent)",
        description=(
            "Load storage/data/programme.yaml into DATABASE_URL. Running it again changes "
            "nothing; updates posted from Teams are kept."
        ),
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        sys.stderr.write(f"ourcambridge: configuration error:\n{error}\n")
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return _serve(settings, host=args.host, port=args.port)
    if args.command == "db":
        from storage import migrate

        migrate.upgrade(settings.database_url)
        logger.info("Database schema is up to date")
        return 0
    if args.command == "seed":
        return asyncio.run(_seed(settings))
    return 2


def _serve(settings: Settings, *, host: str | None, port: int | None) -> int:
    from aiohttp import web

    from bot.app import create_app

    host = host or settings.host
    port = port or settings.port
    if not settings.authentication_enabled:
        if not _is_loopback(host) and not settings.allow_unauthenticated_network:
            sys.stderr.write(
                f"ourcambridge: refusing to serve on {host} with authentication OFF "
                "(MicrosoftAppId is empty). Set MicrosoftAppId, listen on 127.0.0.1, or set "
                "ALLOW_UNAUTHENTICATED_NETWORK=true on an isolated test network.\n"
            )
            return 2
        logger.warning(
            "MicrosoftAppId is empty: authentication is OFF. Use this only on your own machine."
        )
    web.run_app(create_app(settings), host=host, port=port, print=None)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _seed(settings: Settings) -> int:
    from storage.db import create_engine, session_factory
    from storage.seed import seed_programme

    engine = create_engine(settings.database_url)
    try:
        await seed_programme(session_factory(engine))  # logs what it created and updated
    finally:
        await engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
